use std::{
	cmp,
	fmt::Debug,
	io,
	task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};

use crate::{Error, StreamError, coding::*};

/// A reader for decoding messages from a stream.
///
/// The `poll_*` methods are the implementation; the `async` methods are thin
/// wrappers, so the reader can be driven from another poll function without
/// pinning a future. Partial bytes accumulate in the internal buffer, so a
/// `Pending` (or a cancelled wrapper) never desynchronizes the stream.
pub struct Reader<S: crate::transport::poll::RecvStream, V> {
	stream: S,
	buffer: BytesMut,
	version: V,
	stats: crate::stats::Session,
}

/// How much payload may pile up behind a parked consumer before
/// [`Reader::poll_read_frame`] wakes it, even while the transport keeps handing over
/// ready chunks.
///
/// The loop's natural boundary is `Pending`, but that is a bound on the transport, not
/// on time: a sender at line rate can keep it `Ready` for as long as it likes, and on a
/// multi-threaded runtime a consumer on another worker would sit idle behind bytes that
/// have already arrived. The value is a trade-off rather than a derived limit, big
/// enough that an ordinary burst is still one wake.
const WAKE_BUDGET: usize = 64 * 1024;

impl<S: crate::transport::poll::RecvStream, V: StreamCodes> Reader<S, V> {
	pub fn new(stream: S, version: V) -> Self {
		Self {
			stream,
			buffer: Default::default(),
			version,
			stats: Default::default(),
		}
	}

	/// Count control messages read here under `stats`.
	pub(crate) fn with_stats(mut self, stats: &crate::stats::Session) -> Self {
		self.stats = stats.clone();
		self
	}

	/// Poll for the next message on the stream.
	pub fn poll_decode<T: Decode<V> + Debug>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>
	where
		V: Clone,
	{
		self.poll_decode_sized(cx).map_ok(|(msg, _)| msg)
	}

	/// [`Self::poll_decode`], also returning how many bytes the message took, for a
	/// handshake to count once the session's stats are known.
	pub(crate) fn poll_decode_sized<T: Decode<V> + Debug>(
		&mut self,
		cx: &mut Context<'_>,
	) -> Poll<Result<(T, usize), Error>>
	where
		V: Clone,
	{
		loop {
			let mut cursor = io::Cursor::new(&self.buffer);
			match T::decode(&mut cursor, self.version.clone()) {
				Ok(msg) => {
					let used = cursor.position() as usize;
					self.buffer.advance(used);
					// Counted only once consumed, so a peek or a retry after a short read
					// never counts the same message twice.
					if let Some(class) = Decode::control(&msg, self.version.clone()) {
						self.stats.control(class, used - msg.uncounted(), true);
					}
					return Poll::Ready(Ok((msg, used)));
				}
				// Stream closed while we still need more data.
				Err(DecodeError::Short) if !ready!(self.poll_read_more(cx))? => {
					return Poll::Ready(Err(DecodeError::Short.into()));
				}
				Err(DecodeError::Short) => {}
				Err(e) => return Poll::Ready(Err(e.into())),
			}
		}
	}

	/// Decode the next message from the stream.
	pub async fn decode<T: Decode<V> + Debug>(&mut self) -> Result<T, Error>
	where
		V: Clone,
	{
		std::future::poll_fn(|cx| self.poll_decode(cx)).await
	}

	/// [`Self::decode`], also returning how many bytes the message took.
	pub(crate) async fn decode_sized<T: Decode<V> + Debug>(&mut self) -> Result<(T, usize), Error>
	where
		V: Clone,
	{
		std::future::poll_fn(|cx| self.poll_decode_sized(cx)).await
	}

	/// Poll for the next message unless the stream is closed cleanly first.
	pub fn poll_decode_maybe<T: Decode<V> + Debug>(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Error>>
	where
		V: Clone,
	{
		if !ready!(self.poll_has_more(cx))? {
			return Poll::Ready(Ok(None));
		}

		self.poll_decode(cx).map_ok(Some)
	}

	/// Decode the next message unless the stream is closed.
	pub async fn decode_maybe<T: Decode<V> + Debug>(&mut self) -> Result<Option<T>, Error>
	where
		V: Clone,
	{
		std::future::poll_fn(|cx| self.poll_decode_maybe(cx)).await
	}

	/// Poll for the next message without consuming it.
	pub fn poll_decode_peek<T: Decode<V> + Debug>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>>
	where
		V: Clone,
	{
		loop {
			let mut cursor = io::Cursor::new(&self.buffer);
			match T::decode(&mut cursor, self.version.clone()) {
				Ok(msg) => return Poll::Ready(Ok(msg)),
				Err(DecodeError::Short) if !ready!(self.poll_read_more(cx))? => {
					return Poll::Ready(Err(DecodeError::Short.into()));
				}
				Err(DecodeError::Short) => {}
				Err(e) => return Poll::Ready(Err(e.into())),
			}
		}
	}

	/// Decode the next message from the stream without consuming it.
	pub async fn decode_peek<T: Decode<V> + Debug>(&mut self) -> Result<T, Error>
	where
		V: Clone,
	{
		std::future::poll_fn(|cx| self.poll_decode_peek(cx)).await
	}

	/// Poll for the next message without consuming it unless the stream closes cleanly first.
	pub fn poll_decode_peek_maybe<T: Decode<V> + Debug>(
		&mut self,
		cx: &mut Context<'_>,
	) -> Poll<Result<Option<T>, Error>>
	where
		V: Clone,
	{
		if !ready!(self.poll_has_more(cx))? {
			return Poll::Ready(Ok(None));
		}

		self.poll_decode_peek(cx).map_ok(Some)
	}

	/// Peek the next message unless the stream is closed.
	pub async fn decode_peek_maybe<T: Decode<V> + Debug>(&mut self) -> Result<Option<T>, Error>
	where
		V: Clone,
	{
		std::future::poll_fn(|cx| self.poll_decode_peek_maybe(cx)).await
	}

	/// Poll for the next chunk, draining the reader's internal buffer first.
	pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Option<Bytes>, Error>> {
		if !self.buffer.is_empty() {
			let n = cmp::min(self.buffer.len(), max);
			return Poll::Ready(Ok(Some(self.buffer.split_to(n).freeze())));
		}
		self.stream
			.poll_read_chunk(cx, max)
			.map_err(|err| self.version.transport_error(err))
	}

	/// Fill a frame's payload from the stream, returning `Pending` once it would block.
	///
	/// `Ready(Ok(()))` means the frame is full and the caller should commit it; an error
	/// means the caller should abort it. Either way the frame is untouched otherwise, so
	/// the caller keeps ownership of the commit/abort decision.
	///
	/// Consumers are woken where the loop yields rather than once per chunk. The wire
	/// hands over everything it has already buffered in one turn, and each wake pays a
	/// group lock and a clock read, so the intermediate ones mostly publish bytes the
	/// consumer is about to be handed anyway. Pairing the deferred
	/// [`frame::ProducerOwned::write`] with its wake is this function's job precisely
	/// because it owns the only `Pending` it can return; the other two exits are woken
	/// by the caller's `finish` (which stamps and publishes the frame) or `abort` (which
	/// fails the group). [`WAKE_BUDGET`] bounds the wait in between.
	pub(crate) fn poll_read_frame(
		&mut self,
		cx: &mut Context<'_>,
		frame: &mut crate::frame::ProducerOwned,
	) -> Poll<Result<(), Error>> {
		let mut owed = 0;

		let result = loop {
			if frame.remaining() == 0 {
				break Ok(());
			}

			match self.poll_read_chunk(cx, frame.remaining()) {
				Poll::Pending => {
					if owed > 0 {
						frame.notify();
					}
					return Poll::Pending;
				}
				Poll::Ready(Ok(Some(chunk))) if !chunk.is_empty() => {
					owed += chunk.len();
					if let Err(err) = frame.write(chunk) {
						break Err(err);
					}
					if owed >= WAKE_BUDGET {
						frame.notify();
						owed = 0;
					}
				}
				// A FIN mid-payload: the declared size never arrived.
				Poll::Ready(Ok(_)) => break Err(Error::WrongSize),
				Poll::Ready(Err(err)) => break Err(err),
			}
		};

		Poll::Ready(result)
	}

	/// Poll for exactly `size` bytes, accumulating partial reads in the buffer.
	pub fn poll_read_exact(&mut self, cx: &mut Context<'_>, size: usize) -> Poll<Result<Bytes, Error>> {
		while self.buffer.len() < size {
			if !ready!(self.poll_read_more(cx))? {
				return Poll::Ready(Err(DecodeError::Short.into()));
			}
		}
		Poll::Ready(Ok(self.buffer.split_to(size).freeze()))
	}

	/// Read exactly the given number of bytes from the stream.
	pub async fn read_exact(&mut self, size: usize) -> Result<Bytes, Error> {
		std::future::poll_fn(|cx| self.poll_read_exact(cx, size)).await
	}

	/// Poll until the stream is closed, erroring if there are any additional bytes.
	pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
		if ready!(self.poll_has_more(cx))? {
			return Poll::Ready(Err(DecodeError::Short.into()));
		}

		Poll::Ready(Ok(()))
	}

	/// Poll for whether data is available in the buffer or stream: `false` once it finishes.
	pub(crate) fn poll_has_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
		if !self.buffer.is_empty() {
			return Poll::Ready(Ok(true));
		}

		self.poll_read_more(cx)
	}

	/// Poll for more data from the stream. `true` if data was read, `false` if the
	/// stream finished.
	fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
		match ready!(self.stream.poll_read_buf(cx, &mut self.buffer)) {
			Ok(Some(_)) => Poll::Ready(Ok(true)),
			Ok(None) => Poll::Ready(Ok(false)),
			Err(e) => Poll::Ready(Err(self.version.transport_error(e))),
		}
	}

	/// Abort the stream with the given error.
	pub fn abort(&mut self, err: impl Into<StreamError>) {
		// STOP_SENDING is a stream operation, so it carries a stream code from the
		// negotiated protocol's registry. A session code, or the other protocol's, would be
		// read against the wrong table and mean something else.
		self.stream.stop(self.version.encode_stream_code(&err.into()));
	}

	/// Cast the reader to a different version, used during version negotiation.
	pub fn with_version<V2>(self, version: V2) -> Reader<S, V2> {
		Reader {
			stream: self.stream,
			buffer: self.buffer,
			version,
			stats: self.stats,
		}
	}
}

impl<S: crate::transport::poll::RecvStream> Reader<S, crate::ietf::Version> {
	/// Read the `[size][body]` of an IETF message whose type `id` was already read,
	/// counting both (but not the type) as control bytes once the body arrives.
	pub(crate) async fn read_message(&mut self, id: u64) -> Result<Bytes, Error> {
		let size: u16 = self.decode().await?;
		let body = self.read_exact(size as usize).await?;
		self.stats
			.control(crate::ietf::message::control(id, self.version), body.len() + 2, true);
		Ok(body)
	}
}

#[cfg(test)]
mod tests {
	use std::sync::Arc;

	use futures::FutureExt;

	use super::*;
	use crate::StreamError;

	/// Records the STOP_SENDING code so a test can assert which registry it came from.
	#[derive(Default)]
	struct StopLog {
		stops: Vec<u32>,
	}

	impl web_transport_trait::poll::RecvStream for StopLog {
		type Error = crate::lite::test_transport::SinkError;

		fn poll_read(
			&mut self,
			_cx: &mut std::task::Context<'_>,
			_dst: &mut [u8],
		) -> std::task::Poll<Result<Option<usize>, Self::Error>> {
			std::task::Poll::Ready(Ok(None))
		}

		fn stop(&mut self, code: u32) {
			self.stops.push(code);
		}

		fn poll_closed(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
			std::task::Poll::Ready(Ok(()))
		}
	}

	/// A control message counts once, when it is consumed: never on a peek, a retry after
	/// a short read, or a failed decode, and in full when it spans chunks.
	#[test]
	fn control_counts_consumed_messages_once() {
		use crate::{
			coding::Encode,
			lite,
			stats::{Bytes, Control, Registry, Tier},
		};
		let registry = Registry::new(Default::default());
		let session = registry.tier(Tier::default()).session("");
		let version = lite::Version::Lite07;
		let msg = lite::Probe {
			bitrate: Some(123),
			rtt: Some(4),
		};
		let bytes: &'static [u8] = msg.encode_bytes(version).unwrap().to_vec().leak();
		let size = bytes.len() as u64;
		let (head, tail) = bytes.split_at(2);
		let counted = || registry.snapshot().control();
		let probes = |n: u64| vec![(Tier::default(), Control::Probe, Bytes { tx: 0, rx: size * n })];

		let mut reader = Reader::new(Chunks([bytes, head].into()), version).with_stats(&session);
		let mut cx = Context::from_waker(std::task::Waker::noop());
		assert!(matches!(
			reader.poll_decode_peek_maybe::<lite::Probe>(&mut cx),
			Poll::Ready(Ok(Some(_)))
		));
		assert!(counted().is_empty());
		assert!(matches!(reader.poll_decode::<lite::Probe>(&mut cx), Poll::Ready(Ok(_))));
		assert_eq!(counted(), probes(1));

		// The second probe arrives in two chunks, so the reader parks and retries.
		assert!(reader.poll_decode::<lite::Probe>(&mut cx).is_pending());
		assert!(reader.poll_decode::<lite::Probe>(&mut cx).is_pending());
		assert_eq!(counted(), probes(1));
		reader.stream.0.push_back(tail);
		assert!(matches!(reader.poll_decode::<lite::Probe>(&mut cx), Poll::Ready(Ok(_))));
		assert_eq!(counted(), probes(2));

		// A body cut short inside its declared size is malformed, and never counted.
		reader.stream.0.push_back(&[1, 0x80]);
		assert!(matches!(
			reader.poll_decode::<lite::Probe>(&mut cx),
			Poll::Ready(Err(_))
		));
		assert_eq!(counted(), probes(2));
	}

	/// STOP_SENDING refuses a stream, so it must carry a stream code. Reusing the session
	/// table here would have the peer decode it against the wrong registry: `Cancel` would
	/// arrive as INTERNAL_ERROR, and `Unauthorized` as KEY_VALUE_FORMATTING_ERROR.
	#[test]
	fn abort_stops_with_a_stream_code() {
		const VERSION: crate::lite::Version = crate::lite::Version::Lite05;

		for (err, expected) in [
			(Error::Cancel, StreamError::Cancel.to_code()),
			(Error::Lagged, StreamError::TooFarBehind.to_code()),
			(
				Error::Unauthorized,
				StreamError::Session(crate::SessionError::Unauthorized).to_code(),
			),
		] {
			let mut reader = Reader::new(StopLog::default(), VERSION);
			reader.abort(&err);
			assert_eq!(reader.stream.stops, vec![expected], "{err:?} used the wrong registry");
		}

		// The two registries disagree about 0 and 1, which is what makes the mix-up silent.
		assert_ne!(StreamError::Cancel.to_code(), crate::SessionError::Cancel.to_code());
	}

	/// And the registry follows the negotiated protocol, not just the stream direction. A
	/// group dropped for being old is a moq-lite code with no moq-transport value, so
	/// the same abort has to leave a different number on each wire.
	#[test]
	fn abort_stops_with_the_negotiated_protocols_code() {
		let mut lite = Reader::new(StopLog::default(), crate::lite::Version::Lite05);
		lite.abort(&Error::Old);

		let mut ietf = Reader::new(StopLog::default(), crate::ietf::Version::Draft20);
		ietf.abort(&Error::Old);

		assert_eq!(lite.stream.stops, vec![StreamError::Old.to_code()]);
		assert_eq!(ietf.stream.stops, vec![crate::ietf::error::INTERNAL_ERROR]);
		assert_ne!(lite.stream.stops, ietf.stream.stops);
	}

	/// Counts wakes delivered to a parked consumer.
	#[derive(Default)]
	struct CountWaker(std::sync::atomic::AtomicUsize);

	impl std::task::Wake for CountWaker {
		fn wake(self: Arc<Self>) {
			self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
		}
	}

	impl CountWaker {
		fn count(&self) -> usize {
			self.0.load(std::sync::atomic::Ordering::SeqCst)
		}
	}

	/// A group with one open frame, plus a consumer parked on its payload.
	fn parked_frame(
		size: usize,
	) -> (
		crate::frame::ProducerOwned,
		crate::frame::Consumer,
		kio::Waiter,
		Arc<CountWaker>,
	) {
		let mut group = crate::group::Info { sequence: 0 }.produce();
		let mut consumer = group.consume();
		let frame = group
			.create_frame_owned(
				crate::frame::Info {
					size: size as u64,
					timestamp: crate::Timestamp::ZERO,
				},
				&Default::default(),
			)
			.unwrap();

		let payload = consumer.next_frame().now_or_never().unwrap().unwrap().unwrap();
		let wakes = Arc::new(CountWaker::default());
		let waiter = kio::Waiter::new(wakes.clone().into());

		(frame, payload, waiter, wakes)
	}

	/// Hands back one queued chunk per poll, then blocks: a stream whose socket has
	/// delivered a burst and has nothing more for this turn.
	#[derive(Default)]
	struct Chunks(std::collections::VecDeque<&'static [u8]>);

	impl web_transport_trait::poll::RecvStream for Chunks {
		type Error = crate::lite::test_transport::SinkError;

		fn poll_read(&mut self, _cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<Result<Option<usize>, Self::Error>> {
			let Some(chunk) = self.0.pop_front() else {
				return Poll::Pending;
			};

			// The caller sizes `dst`, so a chunk larger than it spans two reads.
			let n = chunk.len().min(dst.len());
			dst[..n].copy_from_slice(&chunk[..n]);
			if n < chunk.len() {
				self.0.push_front(&chunk[n..]);
			}

			Poll::Ready(Ok(Some(n)))
		}

		fn stop(&mut self, _code: u32) {}

		fn poll_closed(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
			Poll::Pending
		}
	}

	fn refuses_frame<T: Decode<V> + Debug, V: StreamCodes + Clone>(prefix: &[u8], version: V, oversized: bool) {
		let mut reader = Reader::new(Chunks([b"following bytes".as_slice()].into()), version);
		reader.buffer.extend_from_slice(prefix);
		let mut cx = Context::from_waker(std::task::Waker::noop());
		let result = reader.poll_decode::<T>(&mut cx);
		if oversized {
			assert!(
				matches!(
					result,
					Poll::Ready(Err(Error::Decode(DecodeError::MessageTooLarge { .. })))
				),
				"{result:?}"
			);
		} else {
			assert!(
				matches!(result, Poll::Ready(Err(Error::Decode(DecodeError::InvalidValue)))),
				"{result:?}"
			);
		}
		assert_eq!(reader.buffer.len(), prefix.len());
		assert_eq!(reader.stream.0.len(), 1, "read past the complete frame");
	}

	#[test]
	fn malformed_complete_frames_are_refused() {
		use crate::{Version, ietf, lite, setup};
		refuses_frame::<lite::Setup, _>(&[0], lite::Version::Lite05, false);
		refuses_frame::<lite::Goaway, _>(&[0], lite::Version::Lite05, false);
		refuses_frame::<ietf::GoAway, _>(&[0, 0], ietf::Version::Draft20, false);
		for version in [
			Version::Lite(lite::Version::Lite01),
			Version::Lite(lite::Version::Lite02),
			Version::Ietf(ietf::Version::Draft14),
		] {
			let prefix = if version.is_lite() {
				&[0x20, 0][..]
			} else {
				&[0x20, 0, 0][..]
			};
			refuses_frame::<setup::Client, _>(prefix, version, false);
			let prefix = if version.is_lite() {
				&[0x21, 0][..]
			} else {
				&[0x21, 0, 0][..]
			};
			refuses_frame::<setup::Server, _>(prefix, version, false);
		}
	}

	#[test]
	fn oversized_setup_is_refused_at_the_prefix() {
		use crate::{Version, lite, setup};
		for version in [lite::Version::Lite01, lite::Version::Lite02] {
			for size in [65537u64, (1 << 40) + 1] {
				let mut prefix = vec![0x20];
				size.encode(&mut prefix, version).unwrap();
				refuses_frame::<setup::Client, _>(&prefix, Version::Lite(version), true);
				prefix[0] = 0x21;
				refuses_frame::<setup::Server, _>(&prefix, Version::Lite(version), true);
			}
		}
		for version in [lite::Version::Lite05, lite::Version::Lite06] {
			let mut prefix = Vec::new();
			65537u64.encode(&mut prefix, version).unwrap();
			refuses_frame::<lite::Setup, _>(&prefix, version, true);
		}
	}

	#[test]
	fn setup_at_the_limit_waits_for_its_body() {
		use crate::{Version, lite, setup};
		for version in [lite::Version::Lite01, lite::Version::Lite02] {
			let mut prefix = vec![0x20];
			65536u64.encode(&mut prefix, version).unwrap();
			assert!(matches!(
				setup::Client::decode(&mut prefix.as_slice(), Version::Lite(version)),
				Err(DecodeError::Short)
			));
			prefix[0] = 0x21;
			assert!(matches!(
				setup::Server::decode(&mut prefix.as_slice(), Version::Lite(version)),
				Err(DecodeError::Short)
			));
		}
		for version in [lite::Version::Lite05, lite::Version::Lite06] {
			let mut prefix = Vec::new();
			65536u64.encode(&mut prefix, version).unwrap();
			assert!(matches!(
				lite::Setup::decode(&mut prefix.as_slice(), version),
				Err(DecodeError::Short)
			));
		}
	}

	#[test]
	fn fragmented_setup_waits_for_its_body() {
		let mut reader = Reader::new(Chunks([b"\x01".as_slice()].into()), crate::lite::Version::Lite05);
		let mut cx = Context::from_waker(std::task::Waker::noop());
		assert!(reader.poll_decode::<crate::lite::Setup>(&mut cx).is_pending());
		reader.stream.0.push_back(b"\x00");
		assert!(matches!(
			reader.poll_decode::<crate::lite::Setup>(&mut cx),
			Poll::Ready(Ok(_))
		));
		assert!(reader.buffer.is_empty());
	}

	/// A consumer parked on the group cannot run until this task yields, so a burst of
	/// chunks owes exactly one wake: at the boundary, from whoever wrote them. Every
	/// other exit hands the wake to the caller's `finish` or `abort`.
	#[test]
	fn frame_payload_wakes_once_per_poll_turn() {
		let (mut frame, mut payload, waiter, wakes) = parked_frame(9);
		assert!(payload.poll_read_chunk(&waiter).is_pending());

		let mut reader = Reader::new(Chunks([b"foo".as_slice(), b"bar"].into()), crate::lite::Version::Lite05);
		let mut cx = Context::from_waker(std::task::Waker::noop());

		assert!(reader.poll_read_frame(&mut cx, &mut frame).is_pending());
		assert_eq!(wakes.count(), 1, "two chunks in one turn owe one wake");

		let Poll::Ready(Ok(Some(chunk))) = payload.poll_read_chunk(&waiter) else {
			panic!("the boundary wake did not publish both chunks");
		};
		assert_eq!(chunk, Bytes::from_static(b"foobar"));

		// A turn that reads nothing must not touch the group at all.
		assert!(payload.poll_read_chunk(&waiter).is_pending());
		assert!(reader.poll_read_frame(&mut cx, &mut frame).is_pending());
		assert_eq!(wakes.count(), 1, "an empty poll turn woke a consumer");

		// The tail completes the frame, so the loop returns without a wake of its own.
		// The commit is what publishes it, and the commit is the caller's to make.
		reader.stream.0.push_back(b"baz");
		assert!(matches!(
			reader.poll_read_frame(&mut cx, &mut frame),
			Poll::Ready(Ok(()))
		));
		assert_eq!(wakes.count(), 1, "a full frame woke before it was committed");

		frame.finish().unwrap();
		assert_eq!(wakes.count(), 2);
	}

	/// Stands in for an egress consumer on another worker: it catches up and re-parks
	/// before handing over each chunk, so every wake the drain loop issues while the
	/// burst is in flight lands on a parked waiter and is counted.
	struct Burst {
		chunks: Chunks,
		payload: crate::frame::Consumer,
		waiter: kio::Waiter,
	}

	impl web_transport_trait::poll::RecvStream for Burst {
		type Error = crate::lite::test_transport::SinkError;

		fn poll_read(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<Result<Option<usize>, Self::Error>> {
			// Start each turn with none of the last turn's registrations left.
			self.waiter = kio::Waiter::new(self.waiter.waker().clone());
			while self.payload.poll_read_chunk(&self.waiter).is_ready() {}
			self.chunks.poll_read(cx, dst)
		}

		fn stop(&mut self, _code: u32) {}

		fn poll_closed(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
			Poll::Pending
		}
	}

	/// A sender at line rate can keep the drain loop `Ready` for as long as it likes, so
	/// the loop's own boundary is not a bound on how long a parked consumer waits.
	/// [`WAKE_BUDGET`] is.
	#[test]
	fn a_burst_past_the_budget_wakes_before_the_boundary() {
		const CHUNK: &[u8] = &[0u8; 8 * 1024];
		let chunks = 2 * WAKE_BUDGET / CHUNK.len();

		// One byte short, so the loop can never reach its `Ok(())` exit.
		let (mut frame, mut payload, waiter, wakes) = parked_frame(chunks * CHUNK.len() + 1);
		assert!(payload.poll_read_chunk(&waiter).is_pending());

		let mut reader = Reader::new(
			Burst {
				chunks: Chunks(std::iter::repeat_n(CHUNK, chunks).collect()),
				payload,
				waiter,
			},
			crate::lite::Version::Lite05,
		);
		let mut cx = Context::from_waker(std::task::Waker::noop());
		assert!(reader.poll_read_frame(&mut cx, &mut frame).is_pending());

		// Two budgets' worth, and the boundary is owed nothing by the time it arrives.
		assert_eq!(wakes.count(), 2, "the burst was withheld past its budget");
	}
}
