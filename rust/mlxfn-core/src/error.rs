//! Errors of the core, with the fields a caller needs to report or map them.

use std::io;

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong writing or reading an mlxfn file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// Any other I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file is neither an mlxfn file nor recognisable as one.
    #[error("{path}: not an mlxfn file ({detail})")]
    NotMlxfn {
        /// The path as given.
        path: String,
        /// What was found instead.
        detail: String,
    },
    /// The file is neither an mlxfn file nor one written by MLX's exporter.
    #[error("{path}: not an mlxfn file nor a file written by MLX's exporter")]
    Unrecognized {
        /// The path as given.
        path: String,
    },
    /// A file written by MLX's exporter whose header cannot be read.
    #[error("{path}: {detail}")]
    MlxFile {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The file is shorter (or longer) than its header says.
    #[error("{path}: {}", size_problem(.expected, .actual))]
    Truncated {
        /// The path as given.
        path: String,
        /// Bytes the file should have.
        expected: u64,
        /// Bytes it has.
        actual: u64,
    },
    /// A header field is inconsistent.
    #[error("{path}: corrupted header: {field}: {detail}")]
    BadHeader {
        /// The path as given.
        path: String,
        /// The header field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The file was written by a newer format version.
    #[error(
        "{path}: written in mlxfn format version {found}; this mlxfn reads versions up to \
         {supported}: upgrade mlxfn"
    )]
    NewerVersion {
        /// The path as given.
        path: String,
        /// The file's format version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The graph failed its checksum or the FlatBuffers verifier.
    #[error("{path}: corrupted graph: {detail}")]
    Flatbuffer {
        /// The path as given.
        path: String,
        /// The verifier's or checksum's complaint.
        detail: String,
    },
    /// The graph is well-formed FlatBuffers but describes something impossible.
    #[error("{path}: invalid graph: {what}")]
    Invalid {
        /// The path as given.
        path: String,
        /// What is wrong, naming the table and index.
        what: String,
    },
    /// A constant's bytes do not match their stored hash.
    #[error(
        "{path}: constant {constant} is corrupted: its bytes hash to {actual:#018x}, \
         the file says {expected:#018x}"
    )]
    Integrity {
        /// The path as given.
        path: String,
        /// Index of the constant.
        constant: usize,
        /// Stored hash.
        expected: u64,
        /// Hash of the bytes found.
        actual: u64,
    },
    /// The file was rewritten in place (truncated or written to) after it
    /// was opened, so its mapping no longer holds what was validated.
    #[error("{path}: the file changed on disk after it was imported ({what}); import it again")]
    Changed {
        /// The path as given.
        path: String,
        /// What changed.
        what: String,
    },
    /// A caller asked for something impossible (a constant that does not
    /// exist, a buffer of the wrong size).
    #[error("{path}: {what}")]
    Usage {
        /// The path of the file the request was about.
        path: String,
        /// What is wrong with the request.
        what: String,
    },
    /// The graph or constants handed to the writer are inconsistent.
    #[error("cannot write {path}: {what}")]
    InvalidGraph {
        /// The target path.
        path: String,
        /// What is wrong.
        what: String,
    },
}

fn size_problem(expected: &u64, actual: &u64) -> String {
    // Every file has a graph after its header: 64 bytes is never a file size.
    if *expected == crate::header::HEADER_SIZE as u64 {
        format!("truncated: {actual} bytes, shorter than the {expected}-byte header")
    } else if actual < expected {
        format!("truncated: the header says {expected} bytes, the file has {actual}")
    } else {
        format!("the header says {expected} bytes, the file has {actual}: bytes were appended")
    }
}

impl Error {
    /// Wrap an I/O error, turning "not found" into [`Error::NotFound`].
    pub fn io(path: &str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            Error::NotFound { path: path.to_owned() }
        } else {
            Error::Io { path: path.to_owned(), source }
        }
    }
}
