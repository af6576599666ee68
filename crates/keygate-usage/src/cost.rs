//! What a request cost, in whole micro-USD, from its tokens and the model's prices.

/// Price steps per USD-per-million-tokens: prices are taken to a millionth of a dollar per
/// million tokens (catalog prices have at most a few decimals), so the sum below is exact in
/// integers and never depends on how binary floating point rounds `0.07 * 100`.
const PRICE_STEPS: f64 = 1_000_000.0;

/// The cost of `input` and `output` tokens at the given prices (USD per million tokens), in
/// micro-USD rounded up: a request that cost anything never shows as free. A USD-per-million
/// price is exactly micro-USD per token, so this is `input * input_price + output * output_price`,
/// computed in integer steps of 10⁻⁶ µUSD. Negative or non-finite prices count as 0.
pub fn cost_micros(
    input: u64,
    output: u64,
    input_per_million: f64,
    output_per_million: f64,
) -> u64 {
    let steps = |price: f64| match price * PRICE_STEPS {
        steps if steps.is_finite() && steps > 0.0 => steps.round() as u128,
        _ => 0,
    };
    let total = u128::from(input)
        .saturating_mul(steps(input_per_million))
        .saturating_add(u128::from(output).saturating_mul(steps(output_per_million)));
    u64::try_from(total.div_ceil(PRICE_STEPS as u128)).unwrap_or(u64::MAX)
}

/// Micro-USD as USD, for display only: sums are done on the integers.
pub(crate) fn usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_rounded_up() {
        // gpt-4o: $2.50 in, $10 out per million tokens.
        assert_eq!(cost_micros(1_000, 500, 2.5, 10.0), 2_500 + 5_000);
        // 0.07 * 100 is 7.000000000000001 in floating point; the cost is exactly 7.
        assert_eq!(cost_micros(100, 0, 0.07, 0.0), 7);
        // 3 tokens at $0.15 per million: 0.45 micro-USD, rounded up.
        assert_eq!(cost_micros(3, 0, 0.15, 0.0), 1);
        assert_eq!(cost_micros(0, 0, 2.5, 10.0), 0);
        assert_eq!(cost_micros(10, 10, 0.0, 0.0), 0);
        assert_eq!(cost_micros(10, 10, -1.0, f64::NAN), 0);
        assert_eq!(cost_micros(10, 10, f64::INFINITY, 0.0), 0);
        assert_eq!(cost_micros(u64::MAX, u64::MAX, 1e30, 1e6), u64::MAX);
    }
}
