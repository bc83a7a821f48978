//! Collision detection (spec, "Deteccion Colisiones"): the same license validated from two or
//! more distinct IP addresses within a five-minute window.
//!
//! A collision is recorded once per episode, not once per request: an episode opens when a second
//! distinct IP shows up inside the window and stays open for as long as two or more keep showing
//! up; it closes once a whole window passes in which at most one IP was seen. The next overlap
//! after that is a new episode.
//!
//! [`CollisionWindow`] is the per-license tracker. It is pure and small (an edge keeps one per
//! license it sees traffic for; central keeps one per license across every edge's reports) and is
//! fed the time of each validation, so replayed or late reports are judged by when they happened.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The spec's window: five minutes.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// Distinct IP addresses remembered per license. Two are enough to detect a collision; the rest
/// only make a report more complete, so memory stays bounded however many addresses share a key.
pub const MAX_TRACKED_IPS: usize = 16;

/// A new collision episode: what `license_collisions` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollisionEpisode {
    /// The distinct addresses seen inside the window, sorted (at least two).
    pub ips: Vec<IpAddr>,
    /// The earliest last-seen time among them.
    pub window_start: DateTime<Utc>,
    /// The observation that opened the episode (or the latest seen, for a late report).
    pub window_end: DateTime<Utc>,
}

/// One license's recent addresses and whether a collision episode is open.
///
/// 48 bytes inline plus 32 bytes per remembered address (at most [`MAX_TRACKED_IPS`], so 512).
#[derive(Debug, Clone)]
pub struct CollisionWindow {
    /// Each distinct address with the last time it was seen; unordered, at most MAX_TRACKED_IPS.
    seen: Vec<(IpAddr, DateTime<Utc>)>,
    window: TimeDelta,
    in_episode: bool,
}

impl Default for CollisionWindow {
    /// A tracker with the spec's five-minute window.
    fn default() -> Self {
        Self::new(TimeDelta::seconds(DEFAULT_WINDOW_SECS))
    }
}

impl CollisionWindow {
    /// A tracker whose window is `window` long (at least a millisecond).
    pub fn new(window: TimeDelta) -> Self {
        Self {
            seen: Vec::new(),
            window: window.max(TimeDelta::milliseconds(1)),
            in_episode: false,
        }
    }

    /// Records a validation from `ip` at `at`; `Some` only when this observation opens a new
    /// episode.
    ///
    /// Two observations collide when they are less than a window apart (spec: "< 5 min"), so two
    /// addresses exactly one window apart do not. Observations may arrive out of order (reports
    /// from several edges); one older than a window before the latest seen is too late to change
    /// anything and is ignored.
    pub fn observe(&mut self, ip: IpAddr, at: DateTime<Utc>) -> Option<CollisionEpisode> {
        let ip = ip.to_canonical();
        let reference = self.latest().map_or(at, |latest| latest.max(at));
        let horizon = reference - self.window;
        if at <= horizon {
            return None;
        }

        self.seen.retain(|&(_, seen_at)| seen_at > horizon);
        if self.seen.len() * 2 < self.seen.capacity() {
            self.seen.shrink_to_fit();
        }
        // Between observations the set inside the window only shrinks, so its smallest size since
        // the previous observation is its size now, before this one is added: if that is ≤ 1, a
        // whole window went by without overlap and the episode is over.
        if self.seen.len() <= 1 {
            self.in_episode = false;
        }

        match self.seen.iter_mut().find(|(seen_ip, _)| *seen_ip == ip) {
            Some((_, seen_at)) => *seen_at = (*seen_at).max(at),
            None => {
                if self.seen.len() >= MAX_TRACKED_IPS {
                    self.evict_oldest();
                }
                // Exact growth: most licenses only ever show one or two addresses.
                self.seen.reserve_exact(1);
                self.seen.push((ip, at));
            }
        }

        if self.in_episode || self.seen.len() < 2 {
            return None;
        }
        self.in_episode = true;
        let mut ips: Vec<IpAddr> = self.seen.iter().map(|&(ip, _)| ip).collect();
        ips.sort_unstable();
        let window_start = self
            .seen
            .iter()
            .map(|&(_, seen_at)| seen_at)
            .min()
            .unwrap_or(reference);
        Some(CollisionEpisode {
            ips,
            window_start,
            window_end: reference,
        })
    }

    /// Whether an episode is open.
    pub fn in_episode(&self) -> bool {
        self.in_episode
    }

    /// Whether nothing was seen within the window before `now`: the tracker can then be dropped
    /// and a fresh one will judge every later observation the same way.
    pub fn is_idle(&self, now: DateTime<Utc>) -> bool {
        let horizon = now - self.window;
        self.seen.iter().all(|&(_, seen_at)| seen_at <= horizon)
    }

    fn latest(&self) -> Option<DateTime<Utc>> {
        self.seen.iter().map(|&(_, seen_at)| seen_at).max()
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .seen
            .iter()
            .enumerate()
            .min_by_key(|&(_, &(_, seen_at))| seen_at)
            .map(|(index, _)| index);
        if let Some(index) = oldest {
            self.seen.swap_remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(m)
    }

    fn secs(s: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(s)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn the_same_ip_again_and_again_is_no_collision() {
        let mut window = CollisionWindow::default();
        for s in 0..1000 {
            assert_eq!(window.observe(ip(1), secs(s)), None);
        }
        assert!(!window.in_episode());
    }

    #[test]
    fn two_ips_four_minutes_apart_open_one_episode() {
        let mut window = CollisionWindow::default();
        assert_eq!(window.observe(ip(1), mins(0)), None);
        assert_eq!(
            window.observe(ip(2), mins(4)),
            Some(CollisionEpisode {
                ips: vec![ip(1), ip(2)],
                window_start: mins(0),
                window_end: mins(4),
            })
        );
        assert!(window.in_episode());
    }

    #[test]
    fn a_third_ip_in_the_same_episode_is_not_reported_again() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        assert!(window.observe(ip(2), mins(1)).is_some());
        assert_eq!(window.observe(ip(3), mins(2)), None);
        assert_eq!(window.observe(ip(1), mins(3)), None);
    }

    #[test]
    fn overlapping_use_for_half_an_hour_is_one_episode() {
        let mut window = CollisionWindow::default();
        let reports = (0..60)
            .filter_map(|half_minute| {
                let ip = ip(1 + (half_minute % 2) as u8);
                window.observe(ip, secs(half_minute * 30))
            })
            .count();
        assert_eq!(reports, 1);
    }

    #[test]
    fn two_ips_six_minutes_apart_are_no_collision() {
        let mut window = CollisionWindow::default();
        assert_eq!(window.observe(ip(1), mins(0)), None);
        assert_eq!(window.observe(ip(2), mins(6)), None);
        assert!(!window.in_episode());
    }

    #[test]
    fn two_ips_exactly_one_window_apart_are_no_collision_but_a_millisecond_less_is() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        assert_eq!(window.observe(ip(2), mins(5)), None);

        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        let just_inside = mins(5) - TimeDelta::milliseconds(1);
        assert!(window.observe(ip(2), just_inside).is_some());
    }

    #[test]
    fn a_new_episode_after_a_quiet_window_is_reported_again() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        assert!(window.observe(ip(2), mins(1)).is_some());
        // Ten quiet minutes, then the overlap starts again.
        assert_eq!(window.observe(ip(1), mins(11)), None);
        assert!(!window.in_episode());
        let again = window.observe(ip(2), mins(12)).unwrap();
        assert_eq!(again.ips, vec![ip(1), ip(2)]);
        assert_eq!((again.window_start, again.window_end), (mins(11), mins(12)));
    }

    #[test]
    fn a_window_with_a_single_ip_ends_the_episode_even_without_silence() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        assert!(window.observe(ip(2), mins(1)).is_some());
        // Only ip 1 for more than a window after ip 2's last use: the episode is over.
        for m in 2..=7 {
            assert_eq!(window.observe(ip(1), mins(m)), None);
        }
        assert!(!window.in_episode());
        assert!(window.observe(ip(2), mins(8)).is_some());
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_same_ip() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(0));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(window.observe(mapped, mins(1)), None);
    }

    #[test]
    fn late_reports_count_by_when_they_happened() {
        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(10));
        // Reported late, but within the window of the latest observation: a collision.
        let episode = window.observe(ip(2), mins(7)).unwrap();
        assert_eq!(
            (episode.window_start, episode.window_end),
            (mins(7), mins(10))
        );

        let mut window = CollisionWindow::default();
        window.observe(ip(1), mins(10));
        // Older than a window before the latest: ignored.
        assert_eq!(window.observe(ip(2), mins(4)), None);
        assert!(!window.in_episode());
    }

    #[test]
    fn memory_stays_bounded_however_many_ips_share_a_key() {
        let mut window = CollisionWindow::default();
        let mut reports = 0;
        for n in 0..200u8 {
            reports += usize::from(
                window
                    .observe(ip(n), t0() + TimeDelta::seconds(i64::from(n)))
                    .is_some(),
            );
            assert!(window.seen.len() <= MAX_TRACKED_IPS);
        }
        assert_eq!(reports, 1);
        assert!(window.seen.capacity() <= MAX_TRACKED_IPS);
        assert!(std::mem::size_of::<CollisionWindow>() <= 48);
    }

    #[test]
    fn the_window_length_is_a_parameter() {
        let mut window = CollisionWindow::new(TimeDelta::seconds(30));
        window.observe(ip(1), secs(0));
        assert_eq!(window.observe(ip(2), secs(31)), None);
        assert!(window.observe(ip(1), secs(40)).is_some());
    }

    #[test]
    fn a_tracker_is_idle_once_a_window_passes_without_traffic() {
        let mut window = CollisionWindow::default();
        assert!(window.is_idle(t0()));
        window.observe(ip(1), mins(0));
        assert!(!window.is_idle(mins(4)));
        assert!(window.is_idle(mins(5)));
    }
}
