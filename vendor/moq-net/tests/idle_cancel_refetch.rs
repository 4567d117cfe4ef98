//! A relay whose last reader leaves mid-group cancels the idle upstream subscription and
//! parks what it cached. A later fetch of that group still gets every frame (#5348).

mod support;

use std::time::Duration;

use moq_net::{Hop, Timestamp, Version};
use support::harness::{MockConnectOptions, connect_mock};

const TIMEOUT: Duration = Duration::from_secs(5);

fn produce_origin(hop: u64) -> moq_net::origin::Producer {
	let (producer, driver) = moq_net::origin::Producer::new(moq_net::origin::Config::new(Hop::new(hop).unwrap()));
	tokio::spawn(support::harness::run(driver));
	producer
}

#[tokio::test(start_paused = true)]
async fn a_group_cut_by_an_idle_cancel_is_refetched_whole() {
	let publisher = produce_origin(1);
	let broadcast = publisher.create_broadcast("bcast").unwrap();
	let track = broadcast.create_track("audio", None).unwrap();
	broadcast.announce(Default::default()).unwrap();

	let mut g0 = track.create_group(moq_net::group::Info { sequence: 0 }).unwrap();
	g0.write_frame(Timestamp::ZERO, &b"0a"[..]).unwrap();
	g0.finish().unwrap();
	let mut g1 = track.create_group(moq_net::group::Info { sequence: 1 }).unwrap();
	g1.write_frame(Timestamp::ZERO, &b"1a"[..]).unwrap();

	let client = produce_origin(2);
	let mut options = MockConnectOptions::new("moq-lite-06".parse::<Version>().unwrap());
	options.server_publish = Some(publisher.consume());
	options.client_subscribe = Some(client.clone());
	let _pair = connect_mock(options).await;

	let consumer = client.consume();
	tokio::time::timeout(TIMEOUT, consumer.routed("bcast"))
		.await
		.unwrap()
		.unwrap();
	let remote = tokio::time::timeout(TIMEOUT, consumer.request_broadcast("bcast"))
		.await
		.unwrap()
		.unwrap();

	{
		let mut subscriber = tokio::time::timeout(TIMEOUT, remote.track("audio").unwrap().subscribe(None))
			.await
			.unwrap()
			.unwrap();
		let mut group = tokio::time::timeout(TIMEOUT, subscriber.recv_group())
			.await
			.unwrap()
			.unwrap()
			.unwrap();
		assert_eq!(group.sequence, 1);
		let frame = tokio::time::timeout(TIMEOUT, group.read_frame())
			.await
			.unwrap()
			.unwrap()
			.unwrap();
		assert_eq!(&frame.payload[..], b"1a");
	}

	// The relay cancels the idle upstream subscription.
	tokio::time::timeout(TIMEOUT, track.unused()).await.unwrap().unwrap();

	g1.write_frame(Timestamp::ZERO, &b"1b"[..]).unwrap();
	g1.finish().unwrap();
	let mut g2 = track.create_group(moq_net::group::Info { sequence: 2 }).unwrap();
	g2.write_frame(Timestamp::ZERO, &b"2a"[..]).unwrap();

	let track = remote.track("audio").unwrap();
	let _feed = track.subscribe(None);
	let mut group = tokio::time::timeout(TIMEOUT, track.fetch_group(1, None))
		.await
		.unwrap()
		.unwrap();
	let mut frames = Vec::new();
	loop {
		match tokio::time::timeout(TIMEOUT, group.read_frame())
			.await
			.expect("group 1 hangs")
		{
			Ok(Some(frame)) => frames.push(frame.payload),
			Ok(None) => break,
			Err(err) => panic!("group 1 failed: {err}"),
		}
	}
	assert_eq!(frames, vec![&b"1a"[..], &b"1b"[..]]);
}
