//! Chunk-size parameters and their validation.
//!
//! Parameters are checked once, at construction, and turned into the two
//! thresholds the boundary search compares against. Invalid sizes are a typed
//! error, never a debug assertion, because they can come from a user's config
//! or from a repository's stored settings.

use std::fmt;

/// Smallest allowed minimum chunk size. The gear hash looks at a 32-byte
/// window; a minimum of at least twice that guarantees the window of every
/// candidate cut lies inside the chunk, which makes boundaries independent of
/// where the previous chunk started (see `docs/format.md`).
pub const MIN_SIZE_FLOOR: usize = 64;
/// Smallest allowed average chunk size.
pub const AVG_SIZE_FLOOR: usize = 256;
/// Largest allowed average chunk size (256 MiB).
pub const AVG_SIZE_CEILING: usize = 1 << 28;
/// Largest allowed maximum chunk size (1 GiB); keeps offsets within `u32`
/// arithmetic in the scanners.
pub const MAX_SIZE_CEILING: usize = 1 << 30;
/// Largest supported normalization level.
pub const MAX_NORMALIZATION: u32 = 3;

/// Minimum, average and maximum chunk size plus the normalization level.
///
/// The average must be a power of two: it sets the number of hash bits a cut
/// must match. Normalization level `n` makes a cut `2^n` times less likely
/// before the average size and `2^n` times more likely after it (FastCDC's
/// normalized chunking), which narrows the size distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkerParams {
    /// No chunk is shorter than this, except the last one of an input.
    pub min_size: usize,
    /// Target average size; a power of two.
    pub avg_size: usize,
    /// No chunk is longer than this.
    pub max_size: usize,
    /// Normalization level, 0 to [`MAX_NORMALIZATION`].
    pub normalization: u32,
}

/// Why a [`ChunkerParams`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsError {
    /// `min_size` is below [`MIN_SIZE_FLOOR`].
    MinTooSmall {
        /// The size given.
        min_size: usize,
    },
    /// `avg_size` is not a power of two within the allowed range.
    AvgInvalid {
        /// The size given.
        avg_size: usize,
    },
    /// The sizes are not ordered `min <= avg <= max`.
    Unordered {
        /// The sizes given.
        min_size: usize,
        /// The sizes given.
        avg_size: usize,
        /// The sizes given.
        max_size: usize,
    },
    /// `max_size` is above [`MAX_SIZE_CEILING`].
    MaxTooLarge {
        /// The size given.
        max_size: usize,
    },
    /// The normalization level is above [`MAX_NORMALIZATION`] or leaves no
    /// hash bits for the relaxed mask.
    NormalizationInvalid {
        /// The level given.
        normalization: u32,
        /// The average size it was combined with.
        avg_size: usize,
    },
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinTooSmall { min_size } => write!(
                f,
                "minimum chunk size {min_size} is too small: use at least {MIN_SIZE_FLOOR} bytes"
            ),
            Self::AvgInvalid { avg_size } => write!(
                f,
                "average chunk size {avg_size} is invalid: use a power of two between \
                 {AVG_SIZE_FLOOR} and {AVG_SIZE_CEILING} bytes"
            ),
            Self::Unordered {
                min_size,
                avg_size,
                max_size,
            } => write!(
                f,
                "chunk sizes must satisfy min <= avg <= max, got min {min_size}, avg {avg_size}, \
                 max {max_size}"
            ),
            Self::MaxTooLarge { max_size } => write!(
                f,
                "maximum chunk size {max_size} is too large: use at most {MAX_SIZE_CEILING} bytes"
            ),
            Self::NormalizationInvalid {
                normalization,
                avg_size,
            } => write!(
                f,
                "normalization level {normalization} is invalid for average size {avg_size}: \
                 use 0 to {MAX_NORMALIZATION}"
            ),
        }
    }
}

impl std::error::Error for ParamsError {}

impl ChunkerParams {
    /// Parameters for whole-disk (block-level) backups: 4/16/64 KiB.
    ///
    /// Chosen by measurement (`docs/chunk-size-study.md`): scattered 4 KiB
    /// writes cost about one chunk each, so the bytes stored per incremental
    /// grow with the average; 16 KiB stores about half of what 64 KiB does.
    pub const DISK_DEFAULT: Self = Self {
        min_size: 4 * 1024,
        avg_size: 16 * 1024,
        max_size: 64 * 1024,
        normalization: 2,
    };

    /// Parameters for file backups: 8/32/128 KiB.
    ///
    /// Chosen by measurement (`docs/chunk-size-study.md`): for file trees the
    /// bytes stored are flat from 16 to 64 KiB, and 32 KiB needs 44% fewer
    /// chunks (index entries, per-chunk work) than 16 KiB.
    pub const FILE_DEFAULT: Self = Self {
        min_size: 8 * 1024,
        avg_size: 32 * 1024,
        max_size: 128 * 1024,
        normalization: 2,
    };

    /// Parameters with the given sizes and normalization level 2.
    /// Call [`validate`](Self::validate) (or build a [`Chunker`](crate::Chunker))
    /// to check them.
    pub const fn new(min_size: usize, avg_size: usize, max_size: usize) -> Self {
        Self {
            min_size,
            avg_size,
            max_size,
            normalization: 2,
        }
    }

    /// The same sizes with another normalization level.
    pub const fn with_normalization(self, normalization: u32) -> Self {
        Self {
            normalization,
            ..self
        }
    }

    /// Checks the parameters, returning what is wrong with them.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let Self {
            min_size,
            avg_size,
            max_size,
            normalization,
        } = *self;
        if min_size < MIN_SIZE_FLOOR {
            return Err(ParamsError::MinTooSmall { min_size });
        }
        if !avg_size.is_power_of_two() || !(AVG_SIZE_FLOOR..=AVG_SIZE_CEILING).contains(&avg_size) {
            return Err(ParamsError::AvgInvalid { avg_size });
        }
        if max_size > MAX_SIZE_CEILING {
            return Err(ParamsError::MaxTooLarge { max_size });
        }
        if min_size > avg_size || avg_size > max_size {
            return Err(ParamsError::Unordered {
                min_size,
                avg_size,
                max_size,
            });
        }
        let bits = avg_size.trailing_zeros();
        if normalization > MAX_NORMALIZATION || normalization >= bits {
            return Err(ParamsError::NormalizationInvalid {
                normalization,
                avg_size,
            });
        }
        Ok(())
    }

    /// The strict threshold (used before `avg_size`) and the relaxed one
    /// (from `avg_size` on): a position is a cut candidate when its hash is
    /// below the threshold, i.e. when its top `bits` bits are all zero.
    pub(crate) fn thresholds(&self) -> Thresholds {
        let bits = self.avg_size.trailing_zeros();
        let strict_bits = bits + self.normalization;
        let relaxed_bits = bits - self.normalization;
        Thresholds {
            strict: 1u32 << (32 - strict_bits),
            relaxed: 1u32 << (32 - relaxed_bits),
        }
    }
}

/// Hash thresholds derived from validated parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    /// A cut before the average size needs `hash < strict`.
    pub strict: u32,
    /// A cut at or after the average size needs `hash < relaxed`.
    pub relaxed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ChunkerParams::DISK_DEFAULT.validate(), Ok(()));
        assert_eq!(ChunkerParams::FILE_DEFAULT.validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_sizes_with_typed_errors() {
        assert_eq!(
            ChunkerParams::new(32, 1024, 4096).validate(),
            Err(ParamsError::MinTooSmall { min_size: 32 })
        );
        assert_eq!(
            ChunkerParams::new(256, 1000, 4096).validate(),
            Err(ParamsError::AvgInvalid { avg_size: 1000 })
        );
        assert!(matches!(
            ChunkerParams::new(2048, 1024, 4096).validate(),
            Err(ParamsError::Unordered { .. })
        ));
        assert!(matches!(
            ChunkerParams::new(256, 1024, 512).validate(),
            Err(ParamsError::Unordered { .. })
        ));
        assert_eq!(
            ChunkerParams::new(256, 1024, 1 << 31).validate(),
            Err(ParamsError::MaxTooLarge { max_size: 1 << 31 })
        );
        assert!(matches!(
            ChunkerParams::new(256, 1024, 4096)
                .with_normalization(4)
                .validate(),
            Err(ParamsError::NormalizationInvalid { .. })
        ));
    }

    #[test]
    fn thresholds_match_mask_bits() {
        let t = ChunkerParams::new(16 << 10, 64 << 10, 256 << 10).thresholds();
        // 64 KiB = 2^16: strict needs 18 zero top bits, relaxed 14.
        assert_eq!(t.strict, 1 << 14);
        assert_eq!(t.relaxed, 1 << 18);
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = ChunkerParams::new(16, 1024, 4096)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least 64"), "{msg}");
    }
}
