//! Fan-out benchmarks for the origin: its route table, the announce cursors
//! watching it, request resolution, the handoff between local sources, and the
//! delivery through a front.
//!
//! Every shape is swept over both axes, publishers (routes) and subscribers
//! (cursors), so a cost that grows with the size of the table rather than with
//! the tree around the touched path shows up as a slope. The table is a trie
//! keyed by path segment: an announcement visits only the cursors on the walk
//! down to its prefix and beneath it. Competing routes at that prefix are
//! ranked once per change, then each cursor selects its first visible entry.
//!
//! A withdrawal wave is swept over the broadcasts it withdraws and the cursors
//! polling through it, and a route churning beneath an unchanged winner over the
//! table and its cursors.
//!
//! An equal-cost pool is swept the same way, over its members and the paths it
//! already serves, and over those paths and the cursors watching the pool.
//!
//! A route swap on one front is swept over its tracks and the copies each track
//! still holds from earlier routes, and a front retiring over the fronts around it.
//! Readers draining a swapped track are swept over their count, the groups every
//! route delivered, and the routes each reader still holds a copy of.
//!
//! Run with `cargo bench -p moq-net --bench origin`.

// Custom timings measure the real time the work took, not the ambient clock.
#![allow(clippy::disallowed_methods)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use moq_net::{Hop, Hops, Pattern, Patterns, Timestamp, announce, broadcast, kio, origin, track};

/// A millisecond track: the frames written here carry timestamps.
fn timed() -> track::Info {
	track::Info::default().with_timescale(moq_net::Timescale::MILLI)
}

/// `(publishers, subscribers)` shapes for the fan-out benchmarks.
const SHAPES: [(usize, usize); 3] = [(100, 10), (1_000, 100), (1_000, 1_000)];

/// `(duplicates, subscribers)` shapes for one *contended* prefix: how many
/// routes cover the same path, against how many cursors watch it. Includes
/// sparse fanout, a live fleet's mesh width, and larger contended tables.
const CONTENDED: [(usize, usize); 6] = [(1, 1), (30, 1), (30, 30), (60, 60), (240, 60), (240, 240)];

/// An origin with `publishers` broadcasts under `room/` and `subscribers`
/// cursors watching everything. The handles are held: dropping a broadcast
/// retracts its route, and dropping a cursor unregisters it.
struct Fanout {
	producer: origin::Producer,
	consumer: origin::Consumer,
	driver: origin::Driver,
	_publishers: Vec<broadcast::Producer>,
	subscribers: Vec<announce::Consumer>,
}

fn fanout(publishers: usize, subscribers: usize) -> Fanout {
	let (producer, driver) = origin::Producer::new(origin::Config::default());
	let consumer = producer.consume();
	let publishers = (0..publishers)
		.map(|i| producer.publish(format!("room/{i}"), origin::Route::default()).unwrap())
		.collect();
	let mut subscribers: Vec<announce::Consumer> = (0..subscribers).map(|_| consumer.announced()).collect();
	// Drain the replay so each iteration measures only what it adds.
	for cursor in &mut subscribers {
		while cursor.next().now_or_never().flatten().is_some() {}
	}
	Fanout {
		producer,
		consumer,
		driver,
		_publishers: publishers,
		subscribers,
	}
}

/// One publish delivered to every subscriber, then its retraction: the
/// announcement fans out to `subscribers` cursors regardless of `publishers`.
fn bench_announce(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/announce");
	for (publishers, subscribers) in SHAPES {
		let id = BenchmarkId::from_parameter(format!("{publishers}p_{subscribers}s"));
		group.bench_function(id, |b| {
			let mut fleet = fanout(publishers, subscribers);
			b.iter(|| {
				let handle = fleet
					.producer
					.publish("room/incoming", origin::Route::default())
					.unwrap();
				for cursor in &mut fleet.subscribers {
					cursor.next().now_or_never().flatten().expect("announce delivered");
				}
				drop(handle);
				for cursor in &mut fleet.subscribers {
					cursor.next().now_or_never().flatten().expect("retract delivered");
				}
			});
		});
	}
	group.finish();
}

/// Cancel unseen additions while every cursor stalls on its initial replay.
fn bench_pending_churn(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/pending_churn");
	for routes in [10, 1_000] {
		for readers in [1, 100] {
			group.bench_function(format!("{routes}routes_{readers}readers"), |b| {
				let (producer, _driver) = origin::Producer::new(origin::Config::default());
				let _routes: Vec<_> = (0..routes)
					.map(|i| producer.publish(format!("z/{i}"), origin::Route::default()).unwrap())
					.collect();
				let mut cursors: Vec<_> = (0..readers).map(|_| producer.consume().announced()).collect();
				let mut sequence = 0u64;
				b.iter(|| {
					sequence += 1;
					drop(
						producer
							.publish(format!("a/{sequence}"), origin::Route::default())
							.unwrap(),
					);
				});
				for cursor in &mut cursors {
					assert_eq!(std::iter::from_fn(|| cursor.try_next()).count(), routes);
				}
			});
		}
	}
	group.finish();
}

/// A peer carrying `publishers` broadcasts withdraws them all before the
/// driver's clock moves again, then `subscribers` cursors drain the retractions.
/// Each retraction quarantines its prefix until a fresh clock reading, so a cost
/// per earlier retraction shows up as a slope over publishers.
fn bench_withdraw(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/withdraw");
	for (publishers, subscribers) in [(100, 1), (1_000, 1), (10_000, 1), (1_000, 10)] {
		let id = BenchmarkId::from_parameter(format!("{publishers}p_{subscribers}s"));
		group.bench_function(id, |b| {
			b.iter_batched(
				|| {
					let (producer, mut driver) = origin::Producer::new(origin::Config::default());
					// Retractions read the driver's last clock reading, which stays put below.
					driver
						.poll(moq_net::time::Instant::now(), &kio::Waiter::noop())
						.unwrap();
					let routes: Vec<_> = (0..publishers)
						.map(|i| producer.dynamic(format!("room/{i}"), peer_route(9, 1)).unwrap())
						.collect();
					let mut cursors: Vec<_> = (0..subscribers).map(|_| producer.consume().announced()).collect();
					for cursor in &mut cursors {
						while cursor.next().now_or_never().flatten().is_some() {}
					}
					(producer, driver, routes, cursors)
				},
				|(producer, driver, routes, mut cursors)| {
					drop(routes);
					for cursor in &mut cursors {
						for _ in 0..publishers {
							cursor.next().now_or_never().flatten().expect("retract delivered");
						}
					}
					(producer, driver, cursors)
				},
				BatchSize::LargeInput,
			);
		});
	}
	group.finish();
}

/// Two peers carry the same `broadcasts` of one publisher, and both withdraw them
/// a broadcast at a time, every cursor polled after each withdrawal as a session's
/// task would be. The first peer's withdrawals queue held updates; the second's, in
/// the opposite order, make each ready behind the held rest. A poll that walks what
/// it holds back shows up as a slope over broadcasts, multiplied by the cursors.
fn bench_withdraw_wave(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/withdraw_wave");
	group.sample_size(10);
	let route = |chain: &[u64]| {
		let mut hops = Hops::new();
		for &hop in chain {
			hops.push(Hop::new(hop).unwrap()).unwrap();
		}
		origin::Route::default().with_hops(hops)
	};
	for broadcasts in [1_000, 10_000] {
		for subscribers in [1, 20, 100] {
			let id = BenchmarkId::from_parameter(format!("{broadcasts}b_{subscribers}s"));
			group.throughput(Throughput::Elements((2 * broadcasts * subscribers) as u64));
			group.bench_function(id, |b| {
				b.iter_batched(
					|| {
						let (producer, mut driver) = origin::Producer::new(origin::Config::default());
						// The holds read the driver's last clock reading, which stays put below.
						driver
							.poll(moq_net::time::Instant::now(), &kio::Waiter::noop())
							.unwrap();
						let near: Vec<_> = (0..broadcasts)
							.map(|i| producer.dynamic(format!("room/{i}"), route(&[9, 2])).unwrap())
							.collect();
						let far: Vec<_> = (0..broadcasts)
							.map(|i| producer.dynamic(format!("room/{i}"), route(&[9, 3, 4])).unwrap())
							.collect();
						let mut cursors: Vec<_> = (0..subscribers).map(|_| producer.consume().announced()).collect();
						for cursor in &mut cursors {
							while cursor.try_next().is_some() {}
						}
						(producer, driver, near, far, cursors)
					},
					|(producer, driver, near, far, mut cursors)| {
						for route in near {
							drop(route);
							for cursor in &mut cursors {
								assert!(cursor.try_next().is_none(), "the update is held");
							}
						}
						for route in far.into_iter().rev() {
							drop(route);
							for cursor in &mut cursors {
								cursor.try_next().expect("retract delivered");
							}
						}
						(producer, driver, cursors)
					},
					BatchSize::LargeInput,
				);
			});
		}
	}
	group.finish();
}

/// A route that never wins arriving at one broadcast's prefix and leaving again,
/// with `broadcasts` in the table and `subscribers` cursors watching. Each change
/// revisits every cursor presenting the prefix and finds its winner unchanged,
/// so a cost per cursor shows up as a slope over subscribers, and one per route
/// in the table as a slope over broadcasts.
fn bench_route_churn(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/route_churn");
	for broadcasts in [1_000, 10_000] {
		for subscribers in [1, 20, 100] {
			let id = BenchmarkId::from_parameter(format!("{broadcasts}b_{subscribers}s"));
			group.bench_function(id, |b| {
				let (producer, _driver) = origin::Producer::new(origin::Config::default());
				let _routes: Vec<_> = (0..broadcasts)
					.map(|i| producer.dynamic(format!("room/{i}"), peer_route(1, 1)).unwrap())
					.collect();
				let mut cursors: Vec<_> = (0..subscribers).map(|_| producer.consume().announced()).collect();
				for cursor in &mut cursors {
					while cursor.try_next().is_some() {}
				}
				b.iter(|| drop(producer.dynamic("room/0", peer_route(2, 5)).unwrap()));
				for cursor in &mut cursors {
					assert!(cursor.try_next().is_none(), "the winner is unchanged");
				}
			});
		}
	}
	group.finish();
}

/// `bench_announce` read through mounts: `publishers` routes under the fleet-wide
/// `.svc/p0`, watched by `subscribers` project sessions that each mount it at
/// their own `<project>/.svc`. Every mount aliases the one target, the worst
/// case, so each announcement reaches every mounted cursor. Compare against
/// `origin/announce` for what a mount adds per cursor.
fn bench_announce_mounted(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/announce_mounted");
	for (publishers, subscribers) in SHAPES {
		let id = BenchmarkId::from_parameter(format!("{publishers}p_{subscribers}s"));
		group.bench_function(id, |b| {
			let (producer, _driver) = origin::Producer::new(origin::Config::default());
			let _publishers: Vec<_> = (0..publishers)
				.map(|i| {
					producer
						.publish(format!(".svc/p0/{i}"), origin::Route::default())
						.unwrap()
				})
				.collect();
			let mut cursors: Vec<announce::Consumer> = (0..subscribers)
				.map(|project| {
					producer
						.mount(format!("p{project}/.svc"), ".svc/p0")
						.unwrap()
						.scope(format!("p{project}"), &Patterns::from(Pattern::all()))
						.unwrap()
						.consume()
						.with_hidden(true)
						.announced()
				})
				.collect();
			for cursor in &mut cursors {
				while cursor.next().now_or_never().flatten().is_some() {}
			}

			b.iter(|| {
				let handle = producer.publish(".svc/p0/incoming", origin::Route::default()).unwrap();
				for cursor in &mut cursors {
					cursor.next().now_or_never().flatten().expect("announce delivered");
				}
				drop(handle);
				for cursor in &mut cursors {
					cursor.next().now_or_never().flatten().expect("retract delivered");
				}
			});
		});
	}
	group.finish();
}

/// A relay's own stats fan-out: `.stats/<project>/node/<node>` for every project
/// on every node, watched by one cursor per peer, each scoped to one project.
/// Cursors differ in scope, so none can be collapsed, and an announcement under
/// one project must not touch the peers watching another.
fn bench_announce_fleet(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/announce_fleet");
	// (projects, nodes, peers). The middle row is a live fleet's shape.
	for (projects, nodes, peers) in [(1, 8, 4), (4, 30, 30), (8, 30, 60)] {
		let id = BenchmarkId::from_parameter(format!("{projects}p_{nodes}n_{peers}c"));
		group.bench_function(id, |b| {
			let (producer, _driver) = origin::Producer::new(origin::Config::default());
			let consumer = producer.consume();
			let _routes: Vec<_> = (0..projects)
				.flat_map(|project| (0..nodes).map(move |node| (project, node)))
				.map(|(project, node)| {
					producer
						.publish(format!(".stats/p{project}/node/edge{node}"), origin::Route::default())
						.unwrap()
				})
				.collect();
			let _cursors: Vec<_> = (0..peers)
				.map(|peer| {
					let patterns: Patterns = [Pattern::subtree(&format!(".stats/p{}", peer % projects)).unwrap()]
						.into_iter()
						.collect();
					consumer.scope("", &patterns).unwrap().announced()
				})
				.collect();
			b.iter(|| {
				let handle = producer
					.publish(".stats/p0/node/incoming", origin::Route::default())
					.unwrap();
				drop(handle);
			});
		});
	}
	group.finish();
}

/// One route flapping at a prefix that `duplicates` others already cover.
///
/// `announce_fleet` gives every path a single announcer, which is the shape a
/// publisher produces. A mesh produces the other one: the same path arrives
/// once per peer it can travel through, so a prefix carries one entry per peer.
/// The trie narrows a change to the touched prefix, but picking the winner
/// there shares the ranking across its watching cursors, so both are swept.
///
/// The arriving route is priced below every incumbent so it takes the prefix
/// outright: each cursor is told twice per iteration, once for the new winner
/// and once for the incumbent taking the prefix back when it retracts. Equal
/// costs would instead tie-break on a hash of the hop chain, which decides the
/// winner but is not what a reconnecting peer does.
fn bench_announce_duplicate(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/announce_duplicate");
	for (duplicates, subscribers) in CONTENDED {
		let id = BenchmarkId::from_parameter(format!("{duplicates}d_{subscribers}s"));
		group.bench_function(id, |b| {
			// No hold, so an iteration times the ranking rather than the origin batching it.
			let mut config = origin::Config::default();
			config.update_hold = Duration::ZERO;
			let (producer, _driver) = origin::Producer::new(config);
			let consumer = producer.consume();
			// Every peer announces the one path, each under its own hop chain so
			// the entries are distinct routes rather than one re-priced in place.
			let _routes: Vec<_> = (1..=duplicates)
				.map(|peer| producer.dynamic(PATH, peer_route(peer as u64, INCUMBENT_COST)).unwrap())
				.collect();
			let mut cursors: Vec<announce::Consumer> = (0..subscribers)
				.map(|_| consumer.clone().with_hidden(true).announced())
				.collect();
			for cursor in &mut cursors {
				while cursor.next().now_or_never().flatten().is_some() {}
			}

			b.iter(|| {
				let handle = producer
					.dynamic(PATH, peer_route(duplicates as u64 + 1, INCUMBENT_COST - 1))
					.unwrap();
				for cursor in &mut cursors {
					cursor.next().now_or_never().flatten().expect("announce delivered");
				}
				drop(handle);
				for cursor in &mut cursors {
					cursor.next().now_or_never().flatten().expect("incumbent restored");
				}
			});
		});
	}
	group.finish();
}

/// Re-price a live mesh route with cursors watching different scopes.
/// The challenger alternates between winning and losing, so selection must
/// honor each cursor's scope rather than reuse one global winner.
fn bench_reprice_duplicate(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/reprice_duplicate");
	for incumbent_cost in [INCUMBENT_COST, origin::Cost::MAX.warm - 1] {
		for (duplicates, subscribers) in CONTENDED {
			let id = BenchmarkId::from_parameter(format!("{duplicates}d_{subscribers}s_cost{incumbent_cost}"));
			group.bench_function(id, |b| {
				// No hold, so an iteration times the ranking rather than the origin batching it.
				let mut config = origin::Config::default();
				config.update_hold = Duration::ZERO;
				let (producer, _driver) = origin::Producer::new(config);
				let _routes: Vec<_> = (1..=duplicates)
					.map(|peer| {
						producer
							.scope(
								"",
								&Patterns::from(Pattern::subtree(&format!("{PATH}/p{}", (peer - 1) % 2)).unwrap()),
							)
							.unwrap()
							.dynamic(PATH, peer_route(peer as u64, incumbent_cost))
							.unwrap()
					})
					.collect();
				let challenger = duplicates as u64 + 1;
				let route = producer
					.dynamic(PATH, peer_route(challenger, incumbent_cost + 1))
					.unwrap();
				let mut cursors: Vec<announce::Consumer> = (0..subscribers)
					.map(|peer| {
						producer
							.consume()
							.scope(
								"",
								&Patterns::from(Pattern::subtree(&format!("{PATH}/p{}", peer % 2)).unwrap()),
							)
							.unwrap()
							.with_hidden(true)
							.announced()
					})
					.collect();
				for cursor in &mut cursors {
					while cursor.next().now_or_never().flatten().is_some() {}
				}
				b.iter(|| {
					for cost in [incumbent_cost - 1, incumbent_cost + 1] {
						route.update(peer_route(challenger, cost)).unwrap();
						for cursor in &mut cursors {
							// The winner is re-priced in place.
							let update = cursor.next().now_or_never().flatten().expect("winner changed");
							assert_eq!(
								update.kind,
								announce::Kind::Updated,
								"expected an update: got {update:?}"
							);
							assert_eq!(update.route.cost, moq_net::origin::Cost::new(cost.min(incumbent_cost)));
						}
					}
				});
			});
		}
	}
	group.finish();
}

/// The contended path: one node's stats feed, which every peer in the mesh
/// carries a route to.
const PATH: &str = ".stats/p0/node/edge0";

/// What every incumbent route costs, leaving room for a cheaper challenger.
const INCUMBENT_COST: u64 = 2;

/// A route as `peer` would have announced it: one hop, at `cost`.
fn peer_route(peer: u64, cost: u64) -> origin::Route {
	let mut hops = Hops::new();
	hops.push(Hop::new(peer).expect("peer id")).expect("hop chain");
	origin::Route::default().with_hops(hops).with_cost(cost)
}

/// An announcement of an unrelated prefix with `fronts` remote fronts parked on
/// their upstream request. Each front watches only the routes covering its own
/// path, so none of them wakes; the driver poll after each change runs whatever
/// did. Sweeps fronts, so a per-front wake shows up as a slope.
fn bench_announce_fronts(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/announce_fronts");
	for fronts in [100, 1_000, 10_000] {
		group.bench_function(BenchmarkId::from_parameter(format!("{fronts}f")), |b| {
			let (producer, mut driver) = origin::Producer::new(origin::Config::default());
			let consumer = producer.consume();
			// Served but never answered: every request under it parks a front.
			let _served = producer.dynamic("room", origin::Route::default()).unwrap();
			let _requests: Vec<_> = (0..fronts)
				.map(|i| consumer.request_broadcast(format!("room/{i}")))
				.collect();
			let waiter = kio::Waiter::noop();
			// Run each front once so it parks on its upstream request.
			driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
			b.iter(|| {
				let handle = producer.publish("other/incoming", origin::Route::default()).unwrap();
				driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
				drop(handle);
				driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
			});
		});
	}
	group.finish();
}

/// One serve sweep over the routes attached to a single announce stream.
///
/// `lite::subscriber`'s serve loop registers *one* waiter, the announce stream
/// machine's, on *every* attached route's request queue, then re-sweeps all of
/// them whenever it wakes. So the sweep fans in: a request arriving on any one
/// route, or one more announce landing during convergence, re-polls every other
/// route's queue, each taking its lock and re-registering the waiter. An idle
/// sweep that serves nothing still costs one lock per attached route.
///
/// A mesh makes `routes` large: a peer announcing `.stats/<project>/node/<node>`
/// for every project on every node attaches one route per path to one stream.
/// This measures a single sweep, so the convergence cost of a reconnecting peer
/// (one sweep per announce, over a table growing to `routes`) reads off it as
/// the sum.
fn bench_serve_idle(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/serve_idle");
	for routes in [30, 300, 3_000] {
		group.throughput(Throughput::Elements(routes as u64));
		group.bench_function(BenchmarkId::from_parameter(format!("{routes}r")), |b| {
			let (producer, _driver) = origin::Producer::new(origin::Config::default());
			// One route per announced path, exactly as a session lands a peer's.
			let dynamics: Vec<_> = (0..routes)
				.map(|i| {
					producer
						.dynamic(format!(".stats/p{}/node/edge{i}", i % 8), origin::Route::default())
						.unwrap()
				})
				.collect();
			b.iter(|| {
				// A fresh waiter per sweep, so every poll pays a real registration: a
				// reused one would find itself still parked on each route and skip it.
				let waiter = kio::Waiter::noop();
				// Nothing is queued, so every poll parks again: the idle sweep.
				for dynamic in &dynamics {
					assert!(dynamic.poll_requested_broadcast(&waiter).is_pending());
				}
			});
		});
	}
	group.finish();
}

/// A new subscriber registering against `publishers` routes and draining the
/// replay: the one operation whose cost legitimately scales with what it watches.
fn bench_subscribe(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/subscribe");
	for (publishers, subscribers) in SHAPES {
		let id = BenchmarkId::from_parameter(format!("{publishers}p_{subscribers}s"));
		group.bench_function(id, |b| {
			let fleet = fanout(publishers, subscribers);
			b.iter(|| {
				let mut cursor = fleet.consumer.announced();
				let mut replayed = 0;
				while let Some(announce::Update {
					kind: announce::Kind::Announced,
					..
				}) = cursor.next().now_or_never().flatten()
				{
					replayed += 1;
				}
				assert_eq!(replayed, publishers);
			});
		});
	}
	group.finish();
}

/// Resolving one broadcast among `publishers`: a local hit walks the table to
/// the exact path and joins the front serving it, and a miss under a broadcast
/// published above it walks the table to prove nothing serves it. Neither may
/// depend on `publishers`.
fn bench_request(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/request");
	// A request costs nothing per subscriber, so this sweeps the publisher counts
	// in `SHAPES` rather than its shapes, whose last two share one.
	for publishers in [100, 1_000] {
		let mut fleet = fanout(publishers, 0);
		// A broadcast above the misses covers them without serving them.
		let _covering = fleet.producer.publish("room", origin::Route::default()).unwrap();
		let waiter = kio::Waiter::noop();
		group.bench_function(BenchmarkId::new("local", publishers), |b| {
			b.iter(|| {
				let pending = fleet.consumer.request_broadcast("room/0");
				// The front's driver resolves the first request; later ones join it.
				fleet.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
				pending
					.now_or_never()
					.expect("resolves once driven")
					.expect("local broadcast");
			});
		});
		group.bench_function(BenchmarkId::new("unroutable", publishers), |b| {
			b.iter(|| {
				let result = fleet
					.consumer
					.request_broadcast("room/missing")
					.now_or_never()
					.expect("fails synchronously");
				assert!(matches!(result, Err(moq_net::Error::Unroutable)));
			});
		});
	}
	group.finish();
}

/// Records which request a wake belongs to, so only woken requests are polled again.
struct Woken {
	id: usize,
	list: Arc<Mutex<Vec<usize>>>,
}

impl Wake for Woken {
	fn wake(self: Arc<Self>) {
		self.list.lock().unwrap().push(self.id);
	}
}

/// Waiting requests, polled only once woken, the way an executor polls tasks.
struct Waiting<F> {
	requests: Vec<Pin<Box<F>>>,
	wakers: Vec<Waker>,
	woken: Arc<Mutex<Vec<usize>>>,
}

impl<F: Future> Waiting<F> {
	/// Every request starts woken, so the first drain polls each once.
	fn new(requests: Vec<F>) -> Self {
		let woken = Arc::new(Mutex::new((0..requests.len()).collect()));
		let wakers = (0..requests.len())
			.map(|id| {
				Waker::from(Arc::new(Woken {
					id,
					list: woken.clone(),
				}))
			})
			.collect();
		Self {
			requests: requests.into_iter().map(Box::pin).collect(),
			wakers,
			woken,
		}
	}

	fn is_woken(&self) -> bool {
		!self.woken.lock().unwrap().is_empty()
	}

	/// Polls the woken requests until none are, asserting each is still waiting.
	fn drain(&mut self) {
		loop {
			let mut ids = std::mem::take(&mut *self.woken.lock().unwrap());
			if ids.is_empty() {
				return;
			}
			ids.sort_unstable();
			ids.dedup();
			for id in ids {
				let mut cx = Context::from_waker(&self.wakers[id]);
				assert!(self.requests[id].as_mut().poll(&mut cx).is_pending());
			}
		}
	}
}

/// Waiting requests have already received an unroutable verdict. Repricing a
/// covering route wakes them; repricing an unrelated route must leave them asleep.
/// Shared paths isolate requester fan-out from the cost of minting one front per path.
/// Only woken requests are polled, so harness polling does not scale with requesters.
fn bench_unroutable_churn(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/unroutable_churn");
	group.sample_size(20);
	for covering in [false, true] {
		for requesters in [0, 1, 32, 256] {
			for distinct in [false, true] {
				if distinct && requesters <= 1 {
					continue;
				}
				for changes in [1, 32] {
					let scope = if covering { "covering" } else { "unrelated" };
					let paths = if distinct { "distinct" } else { "shared" };
					let id = BenchmarkId::new(scope, format!("{requesters}r_{changes}c_{paths}"));
					group.throughput(Throughput::Elements(changes));
					group.bench_function(id, |b| {
						let (producer, mut driver) = origin::Producer::new(origin::Config::default());
						let consumer = producer.consume();
						let server = producer.dynamic("room", origin::Route::default()).unwrap();
						let unrelated = producer.dynamic("other", origin::Route::default()).unwrap();
						let mut waiting = Waiting::new(
							(0..requesters)
								.map(|i| {
									consumer.routed_broadcast(format!("room/job-{}", if distinct { i } else { 0 }))
								})
								.collect(),
						);
						let waiter = kio::Waiter::noop();
						let now = moq_net::time::Instant::now();
						// Drive the first requests to refusal before measuring any route churn.
						waiting.drain();
						driver.poll(now, &waiter).unwrap();
						let expected = if distinct {
							requesters
						} else {
							usize::from(requesters > 0)
						};
						for _ in 0..expected {
							let Poll::Ready(Ok(request)) = server.poll_requested_broadcast(&waiter) else {
								panic!("every distinct path reaches the covering handler");
							};
							request.reject(moq_net::Error::Unroutable);
						}
						driver.poll(now, &waiter).unwrap();
						waiting.drain();
						assert!(server.poll_requested_broadcast(&waiter).is_pending());
						let changed = if covering { &server } else { &unrelated };
						let mut cost = 1;
						b.iter(|| {
							for _ in 0..changes {
								cost = 3 - cost;
								changed.update(origin::Route::default().with_cost(cost)).unwrap();
								assert!(covering || !waiting.is_woken(), "unrelated churn wakes no request");
								waiting.drain();
								driver.poll(now, &waiter).unwrap();
								for _ in 0..if covering { expected } else { 0 } {
									let Poll::Ready(Ok(request)) = server.poll_requested_broadcast(&waiter) else {
										panic!("covering churn re-asks every distinct path");
									};
									request.reject(moq_net::Error::Unroutable);
								}
								assert!(server.poll_requested_broadcast(&waiter).is_pending());
								driver.poll(now, &waiter).unwrap();
								assert!(covering || !waiting.is_woken(), "unrelated churn wakes no request");
								waiting.drain();
							}
						});
					});
				}
			}
		}
	}
	group.finish();
}

/// A front minted, resolved, and retired once its holder leaves, among `fronts`
/// others held open. A retiring front leaves the table it shares with them, so a
/// cost that grows with the table rather than with the one path shows up as a slope.
fn bench_retire(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/retire");
	for fronts in [100, 1_000, 10_000] {
		group.bench_function(BenchmarkId::from_parameter(format!("{fronts}f")), |b| {
			let mut fleet = fanout(fronts + 1, 0);
			let waiter = kio::Waiter::noop();
			let held: Vec<_> = (0..fronts)
				.map(|i| fleet.consumer.request_broadcast(format!("room/{i}")))
				.collect();
			fleet.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
			let _held: Vec<_> = held
				.into_iter()
				.map(|pending| pending.now_or_never().expect("resolved once driven").expect("local"))
				.collect();
			let path = format!("room/{fronts}");
			b.iter(|| {
				let pending = fleet.consumer.request_broadcast(&path);
				fleet.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
				drop(pending.now_or_never().expect("resolved once driven").expect("local"));
				// Nothing holds it and a local source keeps no track, so it retires here.
				fleet.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
			});
		});
	}
	group.finish();
}

/// `(members, paths)` shapes for an equal-cost pool: how many advertisers claim
/// one prefix, against how many paths beneath it are already being served.
const POOL: [usize; 3] = [4, 32, 256];
const POOL_PATHS: [usize; 3] = [100, 1_000, 10_000];

/// Announce cursors watching the pool, against [`POOL_PATHS`].
const POOL_CURSORS: [usize; 3] = [1, 100, 1_000];

/// Hop ids for pool members, clear of the origin's own.
const POOL_HOP: u64 = 1_000;

/// An origin where `members` equal-cost advertisers claim `pool`, already
/// serving `paths` requested paths beneath it, spread across the pool by the
/// hash on each path, and watched by `cursors` announce cursors. Every handle
/// is held so the fronts stay up.
struct Pool {
	producer: origin::Producer,
	driver: origin::Driver,
	_members: Vec<origin::Dynamic>,
	_producers: Vec<broadcast::Producer>,
	_consumers: Vec<broadcast::Consumer>,
	cursors: Vec<announce::Consumer>,
}

impl Pool {
	/// Discard what the cursors were delivered, so each iteration measures only what it adds.
	fn drain(&mut self) {
		for cursor in &mut self.cursors {
			while cursor.next().now_or_never().flatten().is_some() {}
		}
	}
}

fn pool(members: usize, paths: usize, cursors: usize) -> Pool {
	let (producer, mut driver) = origin::Producer::new(origin::Config::new(Hop::new(1).unwrap()));
	let consumer = producer.consume();
	let cursors = (0..cursors).map(|_| consumer.announced()).collect();
	let members: Vec<_> = (0..members)
		.map(|i| producer.dynamic("pool", pool_route(POOL_HOP + i as u64)).unwrap())
		.collect();
	let waiter = kio::Waiter::noop();

	let requests: Vec<_> = (0..paths)
		.map(|i| consumer.request_broadcast(format!("pool/job-{i}")))
		.collect();
	driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
	let mut producers = Vec::with_capacity(paths);
	for member in &members {
		while let Poll::Ready(request) = member.poll_requested_broadcast(&waiter) {
			let broadcast = broadcast::Info::new().produce();
			request.unwrap().accept(&broadcast);
			producers.push(broadcast);
		}
	}
	assert_eq!(producers.len(), paths, "every path reached a member");
	driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
	let consumers = requests
		.into_iter()
		.map(|request| request.now_or_never().expect("resolved once driven").expect("served"))
		.collect();

	let mut pool = Pool {
		producer,
		driver,
		_members: members,
		_producers: producers,
		_consumers: consumers,
		cursors,
	};
	pool.drain();
	pool
}

/// A pool member's claim: one hop, at the same cost as every other member.
fn pool_route(hop: u64) -> origin::Route {
	peer_route(hop, 3)
}

/// A member joining and leaving a pool that already serves `paths` paths.
///
/// Every front under the prefix watches the routes covering it, so each one
/// re-selects on both changes, and each selection scans the pool: the cost is
/// paths times members by design, which this sweep makes visible. The fronts the
/// newcomer outranks request through it, and fall back when it leaves before
/// answering.
fn bench_pool_churn(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/pool_churn");
	// The widest shapes take a noticeable fraction of a second per iteration.
	group.sample_size(10);
	for members in POOL {
		for paths in POOL_PATHS {
			let id = BenchmarkId::from_parameter(format!("{members}m_{paths}p"));
			group.bench_function(id, |b| {
				let mut pool = pool(members, paths, 0);
				let waiter = kio::Waiter::noop();
				let hop = POOL_HOP + members as u64;
				b.iter(|| {
					let joined = pool.producer.dynamic("pool", pool_route(hop)).unwrap();
					pool.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
					drop(joined);
					pool.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
				});
			});
		}
	}
	group.finish();
}

/// [`bench_pool_churn`] at 32 members, watched by `cursors` announce cursors.
///
/// A front whose path the newcomer takes checks whether every cursor on the
/// prefix already restarted for it before renewing the prefix, so the moved
/// fronts times the cursors is the slope to watch.
fn bench_pool_cursors(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/pool_cursors");
	group.sample_size(10);
	let members = 32;
	for paths in POOL_PATHS {
		for cursors in POOL_CURSORS {
			let id = BenchmarkId::from_parameter(format!("{paths}p_{cursors}c"));
			group.bench_function(id, |b| {
				let mut pool = pool(members, paths, cursors);
				let waiter = kio::Waiter::noop();
				let hop = POOL_HOP + members as u64;
				b.iter(|| {
					let joined = pool.producer.dynamic("pool", pool_route(hop)).unwrap();
					pool.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
					drop(joined);
					pool.driver.poll(moq_net::time::Instant::now(), &waiter).unwrap();
					pool.drain();
				});
			});
		}
	}
	group.finish();
}

/// Publisher handoff at one path: a subscriber is reading from one local
/// source when a second announces at the same path and takes over (newest
/// wins). Measured from the standby's attach to the subscriber receiving its
/// first group, with `publishers` unrelated broadcasts in the table.
fn bench_handoff(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/handoff");
	group.measurement_time(Duration::from_secs(5));
	for publishers in [1, 1_000] {
		group.bench_function(BenchmarkId::from_parameter(format!("{publishers}p")), |b| {
			let runtime = tokio::runtime::Builder::new_current_thread()
				.enable_all()
				.build()
				.unwrap();
			let (producer, driver) = origin::Producer::new(origin::Config::default());
			// The driver runs whenever the runtime is entered below.
			runtime.spawn(moq_net::time::run(driver));
			let consumer = producer.consume();
			let _others: Vec<_> = (0..publishers)
				.map(|i| producer.publish(format!("room/{i}"), origin::Route::default()).unwrap())
				.collect();

			b.iter_custom(|iterations| {
				runtime.block_on(async {
					let mut total = Duration::ZERO;
					for _ in 0..iterations {
						let incumbent = producer.publish("room/live", origin::Route::default()).unwrap();
						let track = incumbent.create_track("video", timed()).unwrap();
						let mut first = track.append_group().unwrap();
						first.write_frame(Timestamp::ZERO, b"one".as_ref()).unwrap();
						first.finish().unwrap();

						let resolved = consumer.request_broadcast("room/live").await.unwrap();
						let mut subscription = resolved.track("video").unwrap().subscribe(None).await.unwrap();
						subscription.recv_group().await.unwrap().expect("first group");

						let started = std::time::Instant::now();
						let standby = producer.create_broadcast("room/live").unwrap();
						let track = standby.create_track("video", timed()).unwrap();
						let mut second = track.create_group(moq_net::group::Info { sequence: 1 }).unwrap();
						second.write_frame(Timestamp::ZERO, b"two".as_ref()).unwrap();
						second.finish().unwrap();
						// Announcing is what makes the standby a route the front can take.
						standby.announce(origin::Route::default()).unwrap();
						// The open subscription follows the route swap onto the standby.
						let group = subscription.recv_group().await.unwrap().expect("standby group");
						total += started.elapsed();
						assert_eq!(group.sequence, 1, "standby group");

						drop(subscription);
						incumbent.close();
						standby.close();
						// Wait for the front to close so the next iteration starts a fresh one.
						resolved.closed().await;
					}
					total
				})
			});
		});
	}
	group.finish();
}

/// `(tracks, readers per track)` shapes for [`bench_relay`].
const RELAY: [(usize, usize); 4] = [(1, 1), (1, 100), (100, 1), (10, 100)];

/// Frames per group in [`bench_relay`].
const RELAY_FRAMES: usize = 10;

/// Steady-state delivery through a front: one group of [`RELAY_FRAMES`] frames per
/// track, read in full by every reader of the broadcast the front serves. Readers
/// drain the serving route's shared group cache directly, so measure both the track
/// and reader axes.
fn bench_relay(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/relay");
	for (tracks, readers) in RELAY {
		group.throughput(Throughput::Elements((tracks * readers * RELAY_FRAMES) as u64));
		group.bench_function(BenchmarkId::from_parameter(format!("{tracks}t_{readers}r")), |b| {
			let runtime = tokio::runtime::Builder::new_current_thread()
				.enable_all()
				.build()
				.unwrap();
			let (producer, driver) = origin::Producer::new(origin::Config::default());
			runtime.spawn(moq_net::time::run(driver));
			let broadcast = producer.publish("room/live", origin::Route::default()).unwrap();
			let sources: Vec<_> = (0..tracks)
				.map(|i| broadcast.create_track(format!("{i}"), timed()).unwrap())
				.collect();
			let mut subscriptions = runtime.block_on(async {
				let resolved = producer.consume().request_broadcast("room/live").await.unwrap();
				let mut subscriptions = Vec::new();
				for i in 0..tracks {
					let track = resolved.track(&format!("{i}")).unwrap();
					for _ in 0..readers {
						subscriptions.push(track.subscribe(None).await.unwrap());
					}
				}
				subscriptions
			});

			b.iter_custom(|iterations| {
				runtime.block_on(async {
					let started = std::time::Instant::now();
					for _ in 0..iterations {
						for source in &sources {
							let mut group = source.append_group().unwrap();
							for _ in 0..RELAY_FRAMES {
								group.write_frame(Timestamp::ZERO, b"frame".as_ref()).unwrap();
							}
							group.finish().unwrap();
						}
						for subscription in &mut subscriptions {
							let mut group = subscription.recv_group().await.unwrap().expect("group");
							for _ in 0..RELAY_FRAMES {
								group.read_frame().await.unwrap().expect("frame");
							}
						}
					}
					started.elapsed()
				})
			});
		});
	}
	group.finish();
}

/// Re-poll stalled groups through a front, including their subscription budget.
/// Sweep tracks and readers separately to expose unrelated table scans.
fn bench_parked(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/parked");
	for tracks in [1, 100] {
		for readers in [1, 100] {
			group.throughput(Throughput::Elements((tracks * readers) as u64));
			group.bench_function(BenchmarkId::from_parameter(format!("{tracks}t_{readers}r")), |b| {
				let runtime = tokio::runtime::Builder::new_current_thread()
					.enable_all()
					.build()
					.unwrap();
				let (producer, driver) = origin::Producer::new(origin::Config::default());
				runtime.spawn(moq_net::time::run(driver));
				let broadcast = producer.publish("room/live", origin::Route::default()).unwrap();
				let sources: Vec<_> = (0..tracks)
					.map(|i| broadcast.create_track(format!("{i}"), None).unwrap())
					.collect();
				let _writers: Vec<_> = sources.iter().map(|source| source.append_group().unwrap()).collect();
				let (subscriptions, mut groups) = runtime.block_on(async {
					let resolved = producer.consume().request_broadcast("room/live").await.unwrap();
					let mut subscriptions = Vec::new();
					let mut groups = Vec::new();
					for i in 0..tracks {
						let track = resolved.track(&format!("{i}")).unwrap();
						for _ in 0..readers {
							let mut sub = track.subscribe(None).await.unwrap();
							groups.push(sub.recv_group().await.unwrap().unwrap());
							subscriptions.push(sub);
						}
					}
					(subscriptions, groups)
				});
				let waiter = kio::Waiter::noop();
				b.iter(|| {
					for group in &mut groups {
						assert!(group.poll_read_frame(&waiter).is_pending());
					}
				});
				drop(subscriptions);
			});
		}
	}
	group.finish();
}

/// `(tracks, copies)` for [`bench_copy_walk`]: tracks one front is serving, and
/// route copies each of those tracks still holds when the route swaps.
///
/// The single-copy points from 32 to 128 tracks show the per-track slope alone.
const COPY_WALK: [(usize, usize); 8] = [(1, 1), (1, 32), (32, 1), (64, 1), (128, 1), (8, 32), (32, 8), (64, 16)];

const COPY_PATH: &str = "room/live";

/// How long a splice may take before the bench treats it as stuck.
const COPY_WAIT: Duration = Duration::from_secs(5);

/// One generation at [`COPY_PATH`], held so its copies stay subscribed.
struct Generation {
	broadcast: broadcast::Producer,
	tracks: Vec<track::Producer>,
}

impl Generation {
	/// Create a hidden generation and leave a finished group on every track, so a
	/// reader that does look has something to resume.
	fn build(producer: &origin::Producer, tracks: usize) -> Self {
		let broadcast = producer.create_broadcast(COPY_PATH).unwrap();
		let mut held = Vec::with_capacity(tracks);
		for i in 0..tracks {
			let track = broadcast.create_track(format!("{i}"), timed()).unwrap();
			let mut written = track.append_group().unwrap();
			written.write_frame(Timestamp::ZERO, b"f".as_ref()).unwrap();
			written.finish().unwrap();
			held.push(track);
		}
		Self {
			broadcast,
			tracks: held,
		}
	}

	/// Route the front to this generation without waiting.
	fn route(&self) {
		self.broadcast.announce(origin::Route::default()).unwrap();
	}

	/// Route the front to this generation and wait until every track is spliced.
	///
	/// The wait ends on demand, which flips when the front subscribes the new
	/// copy, before its splice. That bounds the splice only on a current-thread
	/// runtime, where every local query is ready within the front poll that
	/// splices it.
	async fn announce(&self) {
		self.route();
		for track in &self.tracks {
			tokio::time::timeout(COPY_WAIT, track.demand().used())
				.await
				.expect("route swap did not splice")
				.expect("replacement track closed");
		}
	}
}

/// A front serving [`COPY_PATH`], with `copies` route copies on each of its tracks.
struct CopyWalk {
	_producer: origin::Producer,
	_subscribers: Vec<track::Subscriber>,
	generations: Vec<Generation>,
	/// The generation the timed swap announces, built during setup.
	next: Option<Generation>,
}

/// Build a front with `copies` already spliced onto each track.
///
/// Subscribers are never polled. A poll drops a replaced copy once its groups
/// are delivered, and this measures the walk over the copies a swap still has.
/// The same is why every generation is kept: dropping one ends its copy.
async fn copy_walk(tracks: usize, copies: usize) -> CopyWalk {
	assert!(copies >= 1, "a front holds at least the serving copy");
	let (producer, driver) = origin::Producer::new(origin::Config::default());
	tokio::spawn(moq_net::time::run(driver));
	let first = Generation::build(&producer, tracks);
	first.route();
	let resolved = tokio::time::timeout(COPY_WAIT, producer.consume().request_broadcast(COPY_PATH))
		.await
		.expect("front did not resolve")
		.expect("front refused");
	let mut subscribers = Vec::with_capacity(tracks);
	for i in 0..tracks {
		let track = resolved.track(&format!("{i}")).unwrap();
		let subscriber = tokio::time::timeout(COPY_WAIT, track.subscribe(None))
			.await
			.expect("track did not splice")
			.expect("subscribe failed");
		subscribers.push(subscriber);
	}
	let mut generations = Vec::with_capacity(copies + 1);
	generations.push(first);
	for _ in 1..copies {
		let generation = Generation::build(&producer, tracks);
		generation.announce().await;
		generations.push(generation);
	}
	CopyWalk {
		next: Some(Generation::build(&producer, tracks)),
		_producer: producer,
		_subscribers: subscribers,
		generations,
	}
}

impl CopyWalk {
	/// Swap in the prebuilt newer route.
	///
	/// A local track's info is already known, so the front subscribes, walks
	/// every track, and each reader walks its copies in one driver turn.
	async fn swap(&mut self) {
		let generation = self.next.take().expect("one swap per setup");
		generation.announce().await;
		self.generations.push(generation);
	}
}

/// A route swap on one front. Setup holds `copies` per track and builds the
/// next generation, untimed; the announce and splice are timed. Warm-up sizes
/// the iteration count from wall time, which includes that setup, so a large
/// front does not multiply it by a fast routine.
///
/// The runtime must stay current-thread; see [`Generation::announce`].
fn bench_copy_walk(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/copy_walk");
	group.sample_size(10);
	for (tracks, copies) in COPY_WALK {
		group.throughput(Throughput::Elements(tracks as u64));
		group.bench_function(BenchmarkId::from_parameter(format!("{tracks}t_{copies}c")), |b| {
			let runtime = tokio::runtime::Builder::new_current_thread()
				.enable_all()
				.build()
				.unwrap();
			b.iter_batched_ref(
				|| runtime.block_on(copy_walk(tracks, copies)),
				|rig| runtime.block_on(rig.swap()),
				BatchSize::PerIteration,
			);
		});
	}
	group.finish();
}

/// `(readers, retained, routes)` for [`bench_resume_overlap`]: readers of one track,
/// the groups every route holds, and the routes it swapped through.
const RESUME_OVERLAP: [(usize, usize, usize); 15] = [
	(1, 1, 1),
	(1, 64, 1),
	(32, 64, 1),
	(1, 1, 2),
	(1, 64, 2),
	(1, 1024, 2),
	(8, 1, 2),
	(8, 64, 2),
	(8, 1024, 2),
	(32, 64, 2),
	(256, 64, 2),
	(32, 1024, 2),
	(1, 64, 8),
	(1, 64, 32),
	(32, 64, 8),
];

/// A track that swapped through its routes while its readers' local cap held every
/// group back, so each reader keeps a copy per route and every copy holds the same
/// groups, each replacement in reverse arrival order.
struct ResumeOverlap {
	_producer: origin::Producer,
	_generations: Vec<(broadcast::Producer, track::Producer)>,
	readers: Vec<ResumeReader>,
}

enum ResumeReader {
	Arrival(track::Subscriber),
	Sequence(track::Ordered),
}

impl ResumeReader {
	fn poll_group(&mut self, waiter: &kio::Waiter) -> Poll<moq_net::Result<Option<moq_net::group::Consumer>>> {
		match self {
			Self::Arrival(reader) => reader.poll_recv_group(waiter),
			Self::Sequence(reader) => reader.poll_next_group(waiter),
		}
	}
}

async fn resume_overlap(readers: usize, retained: usize, routes: usize, ordered: bool) -> ResumeOverlap {
	let (producer, driver) = origin::Producer::new(origin::Config::default());
	tokio::spawn(moq_net::time::run(driver));
	let generation = |order: &mut dyn Iterator<Item = usize>| {
		let broadcast = producer.create_broadcast(COPY_PATH).unwrap();
		let track = broadcast.create_track("0", timed()).unwrap();
		for sequence in order {
			let mut group = track
				.create_group(moq_net::group::Info {
					sequence: sequence as u64,
				})
				.unwrap();
			group.write_frame(Timestamp::ZERO, b"f".as_ref()).unwrap();
			group.finish().unwrap();
		}
		broadcast.announce(origin::Route::default()).unwrap();
		(broadcast, track)
	};
	let mut generations = vec![generation(&mut (0..retained))];
	let resolved = tokio::time::timeout(COPY_WAIT, producer.consume().request_broadcast(COPY_PATH))
		.await
		.expect("front did not resolve")
		.expect("front refused");
	let track = resolved.track("0").unwrap();
	// A budget covering every group, so none is written off as late.
	let subscription = track::Subscription::default().with_max_age(Duration::from_secs(3600));
	let mut subscribers = Vec::with_capacity(readers);
	for _ in 0..readers {
		let mut subscriber = tokio::time::timeout(COPY_WAIT, track.subscribe(subscription.clone()))
			.await
			.expect("track did not splice")
			.expect("subscribe failed");
		// Held back until the drain, so every route's copy is kept for its unread groups.
		subscriber.set_groups(..0);
		subscribers.push(subscriber);
	}
	let waiter = kio::Waiter::noop();
	for _ in 1..routes {
		generations.push(generation(&mut (0..retained).rev()));
		let (_, latest) = generations.last().unwrap();
		tokio::time::timeout(COPY_WAIT, latest.demand().used())
			.await
			.expect("route swap did not splice")
			.expect("replacement track closed");
		// Each reader follows the swap, subscribing to the new copy.
		for subscriber in &mut subscribers {
			assert!(
				subscriber.poll_recv_group(&waiter).is_pending(),
				"the cap holds every group"
			);
		}
	}
	for subscriber in &mut subscribers {
		subscriber.set_groups(..);
	}
	let readers = subscribers
		.into_iter()
		.map(|subscriber| match ordered {
			true => ResumeReader::Sequence(subscriber.ordered()),
			false => ResumeReader::Arrival(subscriber),
		})
		.collect();
	ResumeOverlap {
		_producer: producer,
		_generations: generations,
		readers,
	}
}

/// Readers draining a track whose routes all delivered every group: each group is
/// handed out once, and every other copy's duplicate is skipped against what the reader
/// handed out. The slopes over retained groups and routes are that skipping's cost.
fn bench_resume_overlap(c: &mut Criterion) {
	let mut group = c.benchmark_group("origin/resume_overlap");
	group.sample_size(10);
	for (order, ordered) in [("arrival", false), ("sequence", true)] {
		for (readers, retained, routes) in RESUME_OVERLAP {
			group.throughput(Throughput::Elements((readers * retained) as u64));
			group.bench_function(
				BenchmarkId::new(order, format!("{readers}r_{retained}g_{routes}c")),
				|b| {
					let runtime = tokio::runtime::Builder::new_current_thread()
						.enable_all()
						.build()
						.unwrap();
					let waiter = kio::Waiter::noop();
					b.iter_batched_ref(
						|| runtime.block_on(resume_overlap(readers, retained, routes, ordered)),
						|rig| {
							for reader in &mut rig.readers {
								let mut delivered = 0;
								while let Poll::Ready(Ok(Some(_))) = reader.poll_group(&waiter) {
									delivered += 1;
								}
								assert_eq!(delivered, retained, "every group once");
							}
						},
						BatchSize::PerIteration,
					);
				},
			);
		}
	}
	group.finish();
}

criterion_group!(
	benches,
	bench_announce,
	bench_pending_churn,
	bench_withdraw,
	bench_withdraw_wave,
	bench_route_churn,
	bench_announce_mounted,
	bench_announce_fleet,
	bench_announce_duplicate,
	bench_reprice_duplicate,
	bench_announce_fronts,
	bench_serve_idle,
	bench_subscribe,
	bench_request,
	bench_unroutable_churn,
	bench_retire,
	bench_pool_churn,
	bench_pool_cursors,
	bench_handoff,
	bench_relay,
	bench_parked,
	bench_copy_walk,
	bench_resume_overlap
);
criterion_main!(benches);
