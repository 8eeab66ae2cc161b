//! Element types and their sizes, in the order the file stores them.

/// An MLX element type. The discriminant is the code stored in files; the
/// order is part of the format (append only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DType {
    /// `bool`, one byte.
    Bool = 0,
    /// `uint8`.
    UInt8 = 1,
    /// `uint16`.
    UInt16 = 2,
    /// `uint32`.
    UInt32 = 3,
    /// `uint64`.
    UInt64 = 4,
    /// `int8`.
    Int8 = 5,
    /// `int16`.
    Int16 = 6,
    /// `int32`.
    Int32 = 7,
    /// `int64`.
    Int64 = 8,
    /// `float16`.
    Float16 = 9,
    /// `float32`.
    Float32 = 10,
    /// `float64`.
    Float64 = 11,
    /// `bfloat16`.
    BFloat16 = 12,
    /// `complex64`: two float32.
    Complex64 = 13,
}

/// Every dtype, indexed by code.
pub const ALL_DTYPES: [DType; 14] = [
    DType::Bool,
    DType::UInt8,
    DType::UInt16,
    DType::UInt32,
    DType::UInt64,
    DType::Int8,
    DType::Int16,
    DType::Int32,
    DType::Int64,
    DType::Float16,
    DType::Float32,
    DType::Float64,
    DType::BFloat16,
    DType::Complex64,
];

impl DType {
    /// The dtype stored as `code`, if the code is known.
    pub fn from_code(code: u8) -> Option<DType> {
        ALL_DTYPES.get(usize::from(code)).copied()
    }

    /// The code stored in files.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// MLX's name of the dtype (`float32`, `bfloat16`, `bool`): the variant's
    /// name in lower case, so that the order of the names is written once,
    /// here, for Python and C alike.
    pub fn mlx_name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Bytes per element.
    pub fn itemsize(self) -> u64 {
        match self {
            DType::Bool | DType::UInt8 | DType::Int8 => 1,
            DType::UInt16 | DType::Int16 | DType::Float16 | DType::BFloat16 => 2,
            DType::UInt32 | DType::Int32 | DType::Float32 => 4,
            DType::UInt64 | DType::Int64 | DType::Float64 | DType::Complex64 => 8,
        }
    }

    /// The byte length of an array of this dtype and `shape`, or None when a
    /// dimension is negative or the size overflows `u64`.
    pub fn nbytes(self, shape: &[i64]) -> Option<u64> {
        shape.iter().try_fold(self.itemsize(), |acc, &dim| u64::try_from(dim).ok().and_then(|d| acc.checked_mul(d)))
    }

    /// Check that `length` bytes is what an array of `shape` needs; the error
    /// reads after "constant N": "has 8 bytes but shape [9] of UInt8 needs 9".
    pub fn check_length(self, shape: &[i64], length: u64) -> Result<(), String> {
        match self.nbytes(shape) {
            Some(n) if n == length => Ok(()),
            needed => Err(format!(
                "has {length} bytes but shape {shape:?} of {self:?} needs {}",
                needed.map_or("an impossible size".into(), |n| n.to_string())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_sizes() {
        for (i, dtype) in ALL_DTYPES.iter().enumerate() {
            assert_eq!(usize::from(dtype.code()), i);
            assert_eq!(DType::from_code(dtype.code()), Some(*dtype));
        }
        assert_eq!(DType::from_code(14), None);
        let names: Vec<String> = ALL_DTYPES.iter().map(|d| d.mlx_name()).collect();
        assert_eq!(names[0], "bool");
        assert_eq!(names[12], "bfloat16");
        assert_eq!(names[13], "complex64");
        assert_eq!(DType::Complex64.nbytes(&[2, 3]), Some(48));
        assert_eq!(DType::Float32.nbytes(&[]), Some(4));
        assert_eq!(DType::Float32.nbytes(&[0, 7]), Some(0));
        assert_eq!(DType::Float32.nbytes(&[-1]), None);
        assert_eq!(DType::Float64.nbytes(&[i64::MAX, i64::MAX]), None);
        assert_eq!(DType::UInt8.check_length(&[2, 4], 8), Ok(()));
        assert_eq!(DType::UInt8.check_length(&[9], 8), Err("has 8 bytes but shape [9] of UInt8 needs 9".into()));
        assert!(DType::Int32.check_length(&[-1], 0).unwrap_err().ends_with("needs an impossible size"));
    }
}
