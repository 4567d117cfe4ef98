//! Two encodings for classrooms on very different links (see [`crate::abr::Layer`]).

use super::*;
use crate::abr::receivers::{REJOIN_AFTER, SPLIT_AFTER};

/// Classrooms, each behind its own simulated link, and the set of controllers that
/// serves them: each encoding runs at its layer's target and makes all of it.
struct School {
    set: ReceiverSet,
    links: Vec<(&'static str, SimLink)>,
    now: Duration,
}

impl School {
    fn new(links: &[(&'static str, f64)]) -> Self {
        // (The simulated links carry 32 kbit/s of sound.)
        let mut set = ReceiverSet::new(AbrSettings {
            audio_wire_kbps: 32.0,
            ..Default::default()
        });
        set.simulcast = true;
        let links = links
            .iter()
            .map(|&(name, capacity_kbps)| {
                let link = SimLink {
                    capacity_kbps,
                    queue_kbit: 0.0,
                    loss: 0.0,
                    measured: None,
                };
                (name, link)
            })
            .collect();
        Self {
            set,
            links,
            now: Duration::ZERO,
        }
    }

    /// A quarter of a second: every box reports what its layer's encoding did to its
    /// link, then the boxes regroup.
    fn step(&mut self) {
        self.now += Duration::from_millis(250);
        for layer in Layer::ALL {
            let made = self.set.target_kbps(layer).map(f64::from);
            self.set.set_encoder(layer, false, made);
        }
        let padding = self.set.padding_kbps(self.now);
        // What each encoding sends over this quarter second (set before any report
        // of it changes a target).
        let sent: Vec<f64> = self
            .links
            .iter()
            .map(|(name, _)| {
                let layer = self.set.layer_of(name).unwrap_or(Layer::Main);
                let kbps = self
                    .set
                    .target_kbps(layer)
                    .or(self.set.target_kbps(Layer::Main))
                    .unwrap_or(AbrSettings::default().start_kbps);
                f64::from(kbps)
            })
            .collect();
        for ((name, link), sent) in self.links.iter_mut().zip(sent) {
            let report = link.step(sent, padding, 0.25);
            self.set.on_report(self.now, name, &report);
        }
        self.set.on_tick(self.now);
        self.set.regroup(self.now);
    }

    fn run(&mut self, secs: u64) {
        let until = self.now + Duration::from_secs(secs);
        while self.now < until {
            self.step();
        }
    }

    fn link(&mut self, name: &str) -> &mut SimLink {
        &mut self.links.iter_mut().find(|(n, _)| *n == name).unwrap().1
    }
}

#[test]
fn a_slow_school_does_not_hold_a_fast_one_down() {
    let mut school = School::new(&[("slow", 300.0), ("fast", 2000.0)]);
    school.run(30);
    assert_eq!(school.set.layer_of("slow"), Some(Layer::Main));
    assert_eq!(school.set.layer_of("fast"), Some(Layer::Fast));
    let main = school.set.target_kbps(Layer::Main).unwrap();
    let fast = school.set.target_kbps(Layer::Fast).unwrap();
    assert!(main < 300, "the slow school's encoding at {main} kbit/s");
    assert!(
        fast > 1200,
        "the fast school's encoding at only {fast} kbit/s"
    );
}

#[test]
fn without_a_second_encoder_the_slowest_sets_the_rate_for_all() {
    let mut school = School::new(&[("slow", 300.0), ("fast", 2000.0)]);
    school.set.simulcast = false;
    school.run(30);
    assert_eq!(school.set.boxes_on(Layer::Fast), Vec::<String>::new());
    assert!(school.set.target_kbps(Layer::Main).unwrap() < 300);
}

#[test]
fn schools_on_like_links_share_one_encoding() {
    let mut school = School::new(&[("a", 900.0), ("b", 1000.0)]);
    school.run(40);
    assert_eq!(school.set.boxes_on(Layer::Fast), Vec::<String>::new());
}

#[test]
fn a_fast_school_whose_link_fails_moves_back_and_stays() {
    let mut school = School::new(&[("slow", 300.0), ("fast", 2000.0)]);
    school.run(30);
    assert_eq!(school.set.layer_of("fast"), Some(Layer::Fast));
    // The fast school's link falls to the slow one's.
    school.link("fast").capacity_kbps = 300.0;
    school.run(10);
    assert_eq!(school.set.layer_of("fast"), Some(Layer::Main));
    // Back to 2 Mbit/s: it stays on the main encoding for a while (each move costs
    // a keyframe), then moves up again.
    school.link("fast").capacity_kbps = 2000.0;
    let back = school.now;
    while school.set.layer_of("fast") == Some(Layer::Main)
        && school.now < back + Duration::from_secs(90)
    {
        school.step();
    }
    assert!(
        school.now >= back + REJOIN_AFTER - Duration::from_secs(10),
        "moved up again after {:?}",
        school.now - back
    );
    assert_eq!(
        school.set.layer_of("fast"),
        Some(Layer::Fast),
        "never moved up again"
    );
}

#[test]
fn when_the_slow_school_leaves_the_fast_encoding_becomes_the_main_one() {
    let mut school = School::new(&[("slow", 300.0), ("fast", 2000.0)]);
    school.run(30);
    school.links.retain(|(name, _)| *name != "slow");
    let forget = school.set.forget_after;
    school.run(forget.as_secs() + 2);
    assert_eq!(school.set.layer_of("fast"), Some(Layer::Main));
    assert_eq!(school.set.boxes_on(Layer::Fast), Vec::<String>::new());
    let main = school.set.target_kbps(Layer::Main).unwrap();
    assert!(
        main > 1200,
        "the 2 Mbit/s school's encoding at {main} kbit/s"
    );
}

#[test]
fn a_moment_of_room_is_not_a_move() {
    // A box that asks for more for less than SPLIT_AFTER stays.
    let mut school = School::new(&[("slow", 300.0), ("fast", 2000.0)]);
    let mut first_ask = None;
    while school.now < Duration::from_secs(30) {
        school.step();
        let main = f64::from(school.set.target_kbps(Layer::Main).unwrap_or(0));
        let asks = school.set.layer_of("fast") == Some(Layer::Main)
            && f64::from(school.set.boxes["fast"].controller.target_kbps())
                >= crate::abr::receivers::SPLIT_ABOVE * main;
        if asks {
            first_ask.get_or_insert(school.now);
        }
        if school.set.layer_of("fast") == Some(Layer::Fast) {
            let asked = first_ask.expect("moved without asking");
            assert!(
                school.now - asked >= SPLIT_AFTER,
                "moved after {:?}",
                school.now - asked
            );
            return;
        }
    }
    panic!("never moved");
}
