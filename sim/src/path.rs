//! Price paths: what the next step's prices are. A seeded random walk (ChaCha8, reproducible per
//! seed) or a file of prices (format on `PricePath::File`). Produces targets only; the exchange
//! applies them to its markets.

use std::io;

use engine::money::Price;
use engine::types::{Symbol, Venue};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{PricePath, SymbolSpec};

/// Which markets one price applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    All,
    Symbol(Symbol),
    Market(Venue, Symbol),
}

/// A step's move: set these markets to this price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    To(Target, i64),
    /// Move the symbol (both venues) by this many basis points of its current price.
    ByBps(Symbol, i64),
}

pub(crate) enum PathState {
    Manual,
    Walk { max_step_bps: i64, rngs: Vec<(Symbol, ChaCha8Rng)> },
    File { steps: Vec<Vec<Move>>, next: usize, looped: bool },
}

impl PathState {
    pub(crate) fn new(path: &PricePath, seed: u64, symbols: &[SymbolSpec]) -> io::Result<Self> {
        Ok(match path {
            PricePath::Manual => PathState::Manual,
            PricePath::RandomWalk { max_step_bps } => PathState::Walk {
                max_step_bps: i64::from(*max_step_bps),
                rngs: symbols
                    .iter()
                    .enumerate()
                    .map(|(i, spec)| {
                        // One independent stream per symbol, fixed by (seed, position).
                        let stream = seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        (spec.symbol, ChaCha8Rng::seed_from_u64(stream))
                    })
                    .collect(),
            },
            PricePath::File { path, looped } => {
                let text = std::fs::read_to_string(path)?;
                PathState::File { steps: parse_file(&text)?, next: 0, looped: *looped }
            }
        })
    }

    /// The next step's moves (empty when a file has run out).
    pub(crate) fn next(&mut self) -> Vec<Move> {
        match self {
            PathState::Manual => Vec::new(),
            PathState::Walk { max_step_bps, rngs } => {
                let max = *max_step_bps;
                rngs.iter_mut()
                    .map(|(symbol, rng)| Move::ByBps(*symbol, rng.random_range(-max..=max)))
                    .collect()
            }
            PathState::File { steps, next, looped } => {
                if *next >= steps.len() {
                    if !*looped || steps.is_empty() {
                        return Vec::new();
                    }
                    *next = 0;
                }
                *next += 1;
                steps[*next - 1].clone()
            }
        }
    }
}

fn bad_line(line_no: usize, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("price file line {line_no}: {why}"))
}

fn parse_price(token: &str, line_no: usize) -> io::Result<i64> {
    match Price::parse(token.as_bytes()) {
        Ok(p) if p.is_positive() => Ok(p.units()),
        Ok(_) => Err(bad_line(line_no, "price must be positive")),
        Err(e) => Err(bad_line(line_no, &format!("bad price {token:?}: {e}"))),
    }
}

fn parse_target(token: &str, line_no: usize) -> io::Result<Target> {
    let (venue, name) = match token.split_once(':') {
        Some(("usdm", name)) => (Some(Venue::Usdm), name),
        Some(("margin", name)) => (Some(Venue::Margin), name),
        Some(_) => return Err(bad_line(line_no, "venue prefix must be usdm: or margin:")),
        None => (None, token),
    };
    let symbol = Symbol::new(name.as_bytes())
        .map_err(|_| bad_line(line_no, &format!("bad symbol {name:?}")))?;
    Ok(match venue {
        Some(venue) => Target::Market(venue, symbol),
        None => Target::Symbol(symbol),
    })
}

/// The file format of `PricePath::File`.
pub(crate) fn parse_file(text: &str) -> io::Result<Vec<Vec<Move>>> {
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let step = if tokens.len() == 1 {
            vec![Move::To(Target::All, parse_price(tokens[0], line_no)?)]
        } else if tokens.len().is_multiple_of(2) {
            tokens
                .chunks(2)
                .map(|pair| {
                    Ok(Move::To(parse_target(pair[0], line_no)?, parse_price(pair[1], line_no)?))
                })
                .collect::<io::Result<Vec<_>>>()?
        } else {
            return Err(bad_line(line_no, "expected PRICE or SYMBOL PRICE pairs"));
        };
        steps.push(step);
    }
    if steps.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "price file has no prices"));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_are_steps_of_prices_or_symbol_pairs() {
        let text = "# header\n50000\n\nBTCUSDT 50010.5 usdm:ETHUSDT 3000 # comment\n";
        let steps = parse_file(text).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0], vec![Move::To(Target::All, Price::lit("50000").units())]);
        assert_eq!(
            steps[1],
            vec![
                Move::To(Target::Symbol(Symbol::lit("BTCUSDT")), Price::lit("50010.5").units()),
                Move::To(
                    Target::Market(Venue::Usdm, Symbol::lit("ETHUSDT")),
                    Price::lit("3000").units()
                ),
            ]
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        let err = parse_file("50000\nBTCUSDT\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_file("-5").unwrap_err().to_string().contains("positive"));
        assert!(parse_file("spot:BTCUSDT 5").is_err());
        assert!(parse_file("# nothing\n").is_err());
    }
}
