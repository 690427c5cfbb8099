//! XFetch (Vattani et al., VLDB 2015): when to recompute a value before it expires, so that a
//! hot key is refreshed by one request in the background instead of missing for everyone at
//! expiry. The only place that decides it; `average::refresh_early_if_due` acts on it.

use std::time::Duration;

/// XFetch's β: above 1 favours refreshing earlier. At 4, a value whose aggregate takes 100 ms
/// is refreshed in about the last second of its TTL under load, and almost never before the
/// last 100 ms.
const EARLY_REFRESH_BETA: f64 = 4.0;

/// The least recompute time assumed. The per-age counts are read in well under a millisecond,
/// which alone would leave the refresh to the value's last few milliseconds, and a worker
/// descheduled for that long lets the value expire under its readers.
const MIN_COMPUTE: Duration = Duration::from_millis(25);

/// Whether to recompute a value now. `uniform` is drawn from (0, 1]: the closer the expiry and
/// the longer the aggregate, the likelier.
pub fn early_refresh_due(compute: Duration, remaining: Duration, uniform: f64) -> bool {
    let compute = compute.max(MIN_COMPUTE);
    let earliness = -(compute.as_secs_f64() * EARLY_REFRESH_BETA * uniform.ln());
    earliness >= remaining.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_refresh_is_likelier_near_expiry_and_for_slow_aggregates() {
        let ms = Duration::from_millis;
        // Far from expiry: never, even at the unluckiest draw of a realistic generator.
        assert!(!early_refresh_due(ms(100), ms(60_000), 1e-9));
        // Past expiry: always.
        assert!(early_refresh_due(ms(100), ms(0), 1.0));
        // The same draw refreshes a slow aggregate and not a fast one.
        assert!(early_refresh_due(ms(100), ms(200), 0.5));
        assert!(!early_refresh_due(ms(1), ms(200), 0.5));
        // A value computed in microseconds is still refreshed ahead of a scheduling delay.
        assert!(early_refresh_due(Duration::from_micros(200), ms(50), 0.5));
    }
}
