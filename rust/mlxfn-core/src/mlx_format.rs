//! What can be read cheaply from a file written by MLX's own exporter
//! (`mx.export_function`, MLX 0.32), so that `mlxfn` can recognise, inspect
//! and convert it.
//!
//! MLX's file is a stream of little-endian values: a string is a u64 length
//! and its bytes, a vector a u64 count and its items, a dtype an i32 code
//! (MLX's `Dtype::Val`, the same order as [`DType`]) and a u8 size, a shape a
//! vector of i32.  It begins with a header (MLX version, i32 function count,
//! u8 shapeless flag, metadata) and then each function: keyword names, input
//! ids (u64), inputs (shape, dtype), output ids, and its tape.  A tape
//! entry's state has a layout of its own for every primitive, so walking past
//! the first function's tape would need a decoder for each of them: only the
//! header and the first function's signature are read here.  Every length is
//! checked against the file's size before it is used.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::model::TensorInfo;

/// The highest rank accepted in a signature.
const MAX_RANK: u64 = 64;

/// The signature of one function: keyword names and every input.
#[derive(Clone, Debug, PartialEq)]
pub struct MlxSignature {
    /// Names of the keyword inputs (the last ones of `inputs`).
    pub keyword_names: Vec<String>,
    /// Every input, positional then keyword.
    pub inputs: Vec<TensorInfo>,
}

/// The header of an MLX export file and its first function's signature.
#[derive(Clone, Debug, PartialEq)]
pub struct MlxHeader {
    /// The MLX version that wrote it.
    pub mlx_version: String,
    /// How many functions (traces) it holds.
    pub function_count: i32,
    /// Whether it was exported with `shapeless=True`.
    pub shapeless: bool,
    /// The user's metadata string.
    pub metadata: String,
    /// The first function's signature (None when there is no function).
    pub first: Option<MlxSignature>,
}

struct Cursor<'a> {
    data: &'a [u8],
    size: u64,
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: u64, what: &str) -> std::result::Result<&[u8], String> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)).filter(|&e| e <= self.data.len());
        let Some(end) = end else { return Err(format!("MLX file truncated or damaged while reading {what}")) };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn count(&mut self, what: &str, item_size: u64) -> std::result::Result<u64, String> {
        let n = u64::from_le_bytes(self.array(what)?);
        if n.checked_mul(item_size).is_none_or(|bytes| bytes > self.size) {
            return Err(format!("MLX file has an impossible {what} ({n})"));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.count(&format!("{what} length"), 1)?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    fn spec(&mut self, what: &str) -> std::result::Result<TensorInfo, String> {
        let rank = self.count(&format!("{what} rank"), 4)?;
        if rank > MAX_RANK {
            return Err(format!("MLX file has an impossible {what} rank ({rank})"));
        }
        let shape = (0..rank)
            .map(|_| Ok(i64::from(i32::from_le_bytes(self.array(what)?))))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let code = i32::from_le_bytes(self.array(what)?);
        let [size] = self.array(what)?;
        match u8::try_from(code).ok().and_then(DType::from_code) {
            Some(dtype) if dtype.itemsize() == u64::from(size) && shape.iter().all(|&d| d >= 0) => {
                Ok(TensorInfo { shape, dtype })
            }
            _ => Err(format!("MLX file has an unknown dtype or a negative size in {what}")),
        }
    }
}

/// Parse the header from the first bytes of a file of `file_size` bytes.
pub fn parse_header(data: &[u8], file_size: u64) -> std::result::Result<MlxHeader, String> {
    let mut c = Cursor { data, size: file_size, pos: 0 };
    let mlx_version = c.string("MLX version")?;
    let function_count = i32::from_le_bytes(c.array("function count")?);
    let [shapeless] = c.array("shapeless flag")?;
    let metadata = c.string("metadata")?;
    if function_count < 0 || shapeless > 1 {
        return Err("not a file written by MLX's exporter (bad header)".into());
    }
    let mut first = None;
    if function_count > 0 {
        let keys = c.count("keyword count", 8)?;
        let keyword_names = (0..keys).map(|_| c.string("keyword name")).collect::<std::result::Result<Vec<_>, _>>()?;
        let ids = c.count("input count", 8)?;
        c.take(8 * ids, "input ids")?;
        let n_inputs = c.count("input count", 13)?;
        if n_inputs != ids || keyword_names.len() as u64 > n_inputs {
            return Err("MLX file's first function has inconsistent inputs".into());
        }
        let inputs =
            (0..n_inputs).map(|i| c.spec(&format!("input {i}"))).collect::<std::result::Result<Vec<_>, _>>()?;
        first = Some(MlxSignature { keyword_names, inputs });
    }
    Ok(MlxHeader { mlx_version, function_count, shapeless: shapeless == 1, metadata, first })
}

/// Read and parse the header of MLX's file at `path`, reading more of the
/// file only while a long metadata string or signature needs it.
pub fn read_header(path: &Path) -> Result<MlxHeader> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| Error::io(&shown, e);
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut need = 1u64 << 16;
    loop {
        let mut data = vec![0u8; need.min(size) as usize];
        file.read_exact_at(&mut data, 0).map_err(io)?;
        match parse_header(&data, size) {
            Ok(header) => return Ok(header),
            Err(detail) if data.len() as u64 >= size => return Err(Error::MlxFile { path: shown, detail }),
            Err(_) => need = need.saturating_mul(16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, "0.32.4");
        out.extend_from_slice(&2i32.to_le_bytes());
        out.push(1);
        string(&mut out, "meta");
        out.extend_from_slice(&1u64.to_le_bytes()); // one keyword name
        string(&mut out, "scale");
        out.extend_from_slice(&2u64.to_le_bytes()); // two input ids
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&2u64.to_le_bytes()); // two inputs
        for (shape, code, size) in [(&[2i32, 3][..], 10i32, 4u8), (&[][..], 10, 4)] {
            out.extend_from_slice(&(shape.len() as u64).to_le_bytes());
            shape.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&code.to_le_bytes());
            out.push(size);
        }
        out
    }

    #[test]
    fn parses_the_header_and_the_first_signature() {
        let bytes = sample();
        let header = parse_header(&bytes, bytes.len() as u64).unwrap();
        assert_eq!((header.mlx_version.as_str(), header.function_count, header.shapeless), ("0.32.4", 2, true));
        assert_eq!(header.metadata, "meta");
        let first = header.first.unwrap();
        assert_eq!(first.keyword_names, ["scale"]);
        assert_eq!(first.inputs[0], TensorInfo { shape: vec![2, 3], dtype: DType::Float32 });
        assert_eq!(first.inputs[1].shape, Vec::<i64>::new());
    }

    #[test]
    fn every_truncation_and_huge_count_is_an_error() {
        let bytes = sample();
        for n in 0..bytes.len() {
            assert!(parse_header(&bytes[..n], bytes.len() as u64).is_err(), "cut at {n}");
        }
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_header(&huge, huge.len() as u64).unwrap_err().contains("impossible MLX version length"));
        let mut dtype = bytes.clone();
        let at = dtype.len() - 5;
        dtype[at] = 99;
        assert!(parse_header(&dtype, dtype.len() as u64).unwrap_err().contains("unknown dtype"));
    }
}
