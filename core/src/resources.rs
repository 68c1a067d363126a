//! Resource vectors in fixed-size integer form, and Kubernetes quantity parsing.
//!
//! The scheduler adds and compares resource lists millions of times per solve, so they are a
//! fixed array of integers (CPU in millicores, memory and storage in bytes, everything else in
//! whole units) rather than a map of strings to quantities.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// The resources the scheduler tracks natively, in slot order.
pub const RESOURCE_NAMES: [&str; NUM_RESOURCES] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "pods",
    "nvidia.com/gpu",
    "amd.com/gpu",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
    "vpc.amazonaws.com/efa",
    "habana.ai/gaudi",
];

/// Number of resource slots in a [`Resources`] vector.
pub const NUM_RESOURCES: usize = 10;

/// Slot of CPU (millicores).
pub const CPU: usize = 0;
/// Slot of memory (bytes).
pub const MEMORY: usize = 1;
/// Slot of ephemeral storage (bytes).
pub const EPHEMERAL_STORAGE: usize = 2;
/// Slot of the pod count.
pub const PODS: usize = 3;
/// Slot of NVIDIA GPUs.
pub const NVIDIA_GPU: usize = 4;

/// The NodePool limit on the number of nodes (`spec.limits.nodes`, Karpenter's
/// `resources.Node`). It caps a count, not a resource of nodes, so it has no slot.
pub const NODES: &str = "nodes";

/// Returns the slot of a resource name, or `None` for a resource the scheduler does not track
/// natively (such pods can still land on existing nodes that advertise it; see
/// [`crate::snapshot::Pod::other_requests`]).
pub fn slot(name: &str) -> Option<usize> {
    RESOURCE_NAMES.iter().position(|n| *n == name)
}

/// A vector of resource amounts, one integer per slot of [`RESOURCE_NAMES`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resources(pub [i64; NUM_RESOURCES]);

impl Resources {
    /// All zeros.
    pub const ZERO: Resources = Resources([0; NUM_RESOURCES]);
    /// The largest representable amount in every slot ("no limit").
    pub const UNLIMITED: Resources = Resources([i64::MAX; NUM_RESOURCES]);

    /// Builds a vector from (slot, amount) pairs.
    pub fn from_pairs(pairs: &[(usize, i64)]) -> Resources {
        let mut r = Resources::ZERO;
        for &(slot, amount) in pairs {
            r.0[slot] = amount;
        }
        r
    }

    /// CPU in millicores.
    pub fn cpu_millis(&self) -> i64 {
        self.0[CPU]
    }

    /// Memory in bytes.
    pub fn memory_bytes(&self) -> i64 {
        self.0[MEMORY]
    }

    /// True when every slot of `self` is at most the same slot of `capacity`.
    #[inline]
    pub fn fits_in(&self, capacity: &Resources) -> bool {
        self.0.iter().zip(capacity.0.iter()).all(|(a, b)| a <= b)
    }

    /// The first slot in which `self` exceeds `capacity`, if any.
    pub fn first_exceeding(&self, capacity: &Resources) -> Option<usize> {
        (0..NUM_RESOURCES).find(|&i| self.0[i] > capacity.0[i])
    }

    /// Slot-wise maximum.
    #[inline]
    pub fn slot_max(&self, other: &Resources) -> Resources {
        let mut out = *self;
        for i in 0..NUM_RESOURCES {
            out.0[i] = out.0[i].max(other.0[i]);
        }
        out
    }

    /// Subtraction that stops at zero in every slot.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut out = *self;
        for i in 0..NUM_RESOURCES {
            out.0[i] = out.0[i].saturating_sub(other.0[i]).max(0);
        }
        out
    }

    /// True when all slots are zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }

    /// Formats one slot's amount the way Kubernetes users read it (`1500m`, `4Gi`, `3`).
    pub fn format_amount(slot: usize, amount: i64) -> String {
        match slot {
            CPU => {
                if amount % 1000 == 0 {
                    format!("{}", amount / 1000)
                } else {
                    format!("{amount}m")
                }
            }
            MEMORY | EPHEMERAL_STORAGE => format_bytes(amount),
            _ => amount.to_string(),
        }
    }
}

fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, size) in UNITS {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{suffix}", bytes / size);
        }
    }
    if bytes >= 1 << 30 {
        return format!("{:.1}Gi", bytes as f64 / (1u64 << 30) as f64);
    }
    if bytes >= 1 << 20 {
        return format!("{:.1}Mi", bytes as f64 / (1u64 << 20) as f64);
    }
    bytes.to_string()
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Prints the non-zero slots as `{cpu: 1500m, memory: 4Gi}`.
impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        let mut first = true;
        for (i, amount) in self.0.iter().enumerate() {
            if *amount == 0 {
                continue;
            }
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            if *amount == i64::MAX {
                write!(f, "{}: unlimited", RESOURCE_NAMES[i])?;
            } else {
                write!(
                    f,
                    "{}: {}",
                    RESOURCE_NAMES[i],
                    Resources::format_amount(i, *amount)
                )?;
            }
        }
        write!(f, "}}")
    }
}

impl Add for Resources {
    type Output = Resources;
    #[inline]
    fn add(mut self, rhs: Resources) -> Resources {
        self += rhs;
        self
    }
}

impl AddAssign for Resources {
    #[inline]
    fn add_assign(&mut self, rhs: Resources) {
        for i in 0..NUM_RESOURCES {
            self.0[i] = self.0[i].saturating_add(rhs.0[i]);
        }
    }
}

impl Sub for Resources {
    type Output = Resources;
    #[inline]
    fn sub(mut self, rhs: Resources) -> Resources {
        self -= rhs;
        self
    }
}

impl SubAssign for Resources {
    #[inline]
    fn sub_assign(&mut self, rhs: Resources) {
        for i in 0..NUM_RESOURCES {
            self.0[i] = self.0[i].saturating_sub(rhs.0[i]);
        }
    }
}

/// A quantity string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a Kubernetes quantity (`100m`, `1.5`, `512Mi`, `2G`, `1e3`) and returns it scaled by
/// `10^scale_exp` and rounded up, as Kubernetes does: `scale_exp = 3` gives milli-units (CPU),
/// `0` gives whole units (bytes, pods).
pub fn parse_quantity_scaled(text: &str, scale_exp: u32) -> Result<i64, QuantityError> {
    let err = |reason| QuantityError {
        value: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("expected a number"));
    }
    // mantissa * 10^exp10 * 2^exp2
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(err("too many digits"));
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err("expected a number"))?
    };
    let mut exp10: i32 = -(frac_part.len() as i32) + scale_exp as i32;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(|| err("unknown suffix"))?;
            exp10 += exp.parse::<i32>().map_err(|_| err("bad exponent"))?;
        }
    }
    let mut value: i128 = mantissa;
    if exp2 > 0 {
        value = value.checked_shl(exp2).ok_or_else(|| err("too large"))?;
    }
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.checked_mul(10).ok_or_else(|| err("too large"))?;
        }
    } else {
        let mut divisor: i128 = 1;
        for _ in 0..(-exp10) {
            divisor = divisor.checked_mul(10).ok_or_else(|| err("too precise"))?;
        }
        // Round up like resource.Quantity's MilliValue/Value do.
        value = (value + divisor - 1) / divisor;
    }
    if value > i64::MAX as i128 {
        return Err(err("too large"));
    }
    let value = value as i64;
    Ok(if negative { -value } else { value })
}

/// Parses a quantity of the named resource into its slot's unit: millicores for `cpu`, whole
/// units (bytes, counts) for everything else.
pub fn parse_for_resource(name: &str, text: &str) -> Result<i64, QuantityError> {
    if name == "cpu" {
        parse_quantity_scaled(text, 3)
    } else {
        parse_quantity_scaled(text, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_in_millis() {
        assert_eq!(parse_for_resource("cpu", "100m").unwrap(), 100);
        assert_eq!(parse_for_resource("cpu", "1").unwrap(), 1000);
        assert_eq!(parse_for_resource("cpu", "1.5").unwrap(), 1500);
        assert_eq!(parse_for_resource("cpu", "0.0001").unwrap(), 1, "rounds up");
        assert_eq!(parse_for_resource("cpu", "2k").unwrap(), 2_000_000);
    }

    #[test]
    fn parses_memory_in_bytes() {
        assert_eq!(parse_for_resource("memory", "512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_for_resource("memory", "2Gi").unwrap(), 2 << 30);
        assert_eq!(parse_for_resource("memory", "1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_for_resource("memory", "1e3").unwrap(), 1000);
        assert_eq!(parse_for_resource("memory", "1.5Gi").unwrap(), 3 << 29);
        assert_eq!(
            parse_for_resource("memory", "128974848").unwrap(),
            128974848
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "5Qi", "1e", "."] {
            assert!(parse_quantity_scaled(bad, 0).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn displays_compactly() {
        let r = Resources::from_pairs(&[(CPU, 1500), (MEMORY, 4 << 30), (PODS, 3)]);
        assert_eq!(r.to_string(), "{cpu: 1500m, memory: 4Gi, pods: 3}");
    }

    #[test]
    fn fit_and_arithmetic() {
        let small = Resources::from_pairs(&[(CPU, 500), (MEMORY, 1 << 30)]);
        let big = Resources::from_pairs(&[(CPU, 2000), (MEMORY, 8 << 30)]);
        assert!(small.fits_in(&big));
        assert!(!big.fits_in(&small));
        assert_eq!(big.first_exceeding(&small), Some(CPU));
        assert_eq!((big - small).0[CPU], 1500);
        assert_eq!(small.saturating_sub(&big), Resources::ZERO);
        assert_eq!(slot("nvidia.com/gpu"), Some(NVIDIA_GPU));
        assert_eq!(slot("example.com/foo"), None);
    }
}
