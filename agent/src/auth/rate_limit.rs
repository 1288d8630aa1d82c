//! Limit on failed authentication attempts, per client address and for all
//! clients together.
//!
//! Every local process connects from 127.0.0.1, so a per-address limit alone
//! cannot tell two local clients apart. The global limit also bounds what
//! many network clients can try together when the API listens beyond
//! loopback. A client over either limit is blocked, a correct token
//! included, until its oldest counted failure leaves the window.
//!
//! No crate is used here: governor, the usual rate limiter, consumes quota
//! on every check and has no read-only check, while this limit counts
//! failures only and is checked before the token is looked at.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures one client address may have within [`WINDOW`].
pub const PER_CLIENT_FAILURES: usize = 10;

/// Failures all clients together may have within [`WINDOW`].
pub const GLOBAL_FAILURES: usize = 50;

/// Length of the sliding window that failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most client addresses tracked at once. Past it, failures of new
/// addresses count only towards the global limit, which still bounds them.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// Sliding-window counts of recent failures.
#[derive(Debug)]
pub struct FailureLimiter {
    per_client_limit: usize,
    global_limit: usize,
    window: Duration,
    clients: HashMap<Option<IpAddr>, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(PER_CLIENT_FAILURES, GLOBAL_FAILURES, WINDOW)
    }
}

impl FailureLimiter {
    /// Creates a limiter with its own limits, for tests.
    pub fn new(per_client_limit: usize, global_limit: usize, window: Duration) -> Self {
        Self {
            per_client_limit,
            global_limit,
            window,
            clients: HashMap::new(),
            global: VecDeque::new(),
        }
    }

    /// Returns how long `client` must wait before its next attempt, or
    /// `None` when it may try now. `None` as the client stands for a
    /// connection whose peer address is unknown.
    pub fn blocked_for(&mut self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        self.forget_expired(now);
        let global = wait_time(&self.global, self.global_limit, self.window, now);
        let own = self
            .clients
            .get(&client)
            .and_then(|failures| wait_time(failures, self.per_client_limit, self.window, now));
        global.max(own)
    }

    /// Counts one failed attempt of `client`.
    pub fn record_failure(&mut self, client: Option<IpAddr>, now: Instant) {
        self.forget_expired(now);
        push_bounded(&mut self.global, self.global_limit, now);
        if self.clients.len() < MAX_TRACKED_CLIENTS || self.clients.contains_key(&client) {
            let failures = self.clients.entry(client).or_default();
            push_bounded(failures, self.per_client_limit, now);
        }
    }

    fn forget_expired(&mut self, now: Instant) {
        let window = self.window;
        let expired = |at: &Instant| now.saturating_duration_since(*at) >= window;
        while self.global.front().is_some_and(expired) {
            self.global.pop_front();
        }
        self.clients.retain(|_, failures| {
            while failures.front().is_some_and(expired) {
                failures.pop_front();
            }
            !failures.is_empty()
        });
    }
}

/// Only the newest `limit` failures matter to the wait time, so older ones
/// are dropped to bound memory.
fn push_bounded(failures: &mut VecDeque<Instant>, limit: usize, now: Instant) {
    failures.push_back(now);
    while failures.len() > limit.max(1) {
        failures.pop_front();
    }
}

fn wait_time(
    failures: &VecDeque<Instant>,
    limit: usize,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    if failures.len() < limit {
        return None;
    }
    let oldest = failures.front()?;
    Some(window.saturating_sub(now.saturating_duration_since(*oldest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    fn other(last_octet: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, last_octet)))
    }

    #[test]
    fn client_blocked_after_limit() {
        let mut limiter = FailureLimiter::new(3, 100, Duration::from_secs(60));
        let start = Instant::now();

        for second in 0..3 {
            let now = start + Duration::from_secs(second);
            assert_eq!(limiter.blocked_for(CLIENT, now), None, "attempt {second}");
            limiter.record_failure(CLIENT, now);
        }

        let now = start + Duration::from_secs(10);
        assert_eq!(
            limiter.blocked_for(CLIENT, now),
            Some(Duration::from_secs(50))
        );
        assert_eq!(limiter.blocked_for(other(1), now), None);
    }

    #[test]
    fn block_ends_when_oldest_failure_expires() {
        let mut limiter = FailureLimiter::new(2, 100, Duration::from_secs(60));
        let start = Instant::now();
        limiter.record_failure(CLIENT, start);
        limiter.record_failure(CLIENT, start + Duration::from_secs(30));

        assert_eq!(
            limiter.blocked_for(CLIENT, start + Duration::from_secs(59)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            limiter.blocked_for(CLIENT, start + Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn global_limit_blocks_every_client() {
        let mut limiter = FailureLimiter::new(100, 4, Duration::from_secs(60));
        let start = Instant::now();
        for octet in 1..=4 {
            limiter.record_failure(other(octet), start);
        }

        assert!(limiter.blocked_for(CLIENT, start).is_some());
        assert!(limiter.blocked_for(None, start).is_some());
    }

    #[test]
    fn tracked_clients_bounded() {
        let mut limiter = FailureLimiter::new(1, usize::MAX, Duration::from_secs(60));
        let start = Instant::now();
        for index in 0..(MAX_TRACKED_CLIENTS + 10) {
            let address = IpAddr::V6(std::net::Ipv6Addr::from(index as u128));
            limiter.record_failure(Some(address), start);
        }

        assert_eq!(limiter.clients.len(), MAX_TRACKED_CLIENTS);
    }

    #[test]
    fn expired_clients_forgotten() {
        let mut limiter = FailureLimiter::new(5, 100, Duration::from_secs(60));
        let start = Instant::now();
        limiter.record_failure(other(1), start);

        limiter.blocked_for(CLIENT, start + Duration::from_secs(61));

        assert!(limiter.clients.is_empty());
        assert!(limiter.global.is_empty());
    }
}
