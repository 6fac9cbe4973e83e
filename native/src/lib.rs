//! `faceaudit_native`: decode a whole batch of faceaudit wire messages into
//! Arrow record batches, one per record kind, in one call without the GIL;
//! and read the offline checker's inputs, Avro container files (`ocf.rs`) and
//! JSON lines (`json.rs`), into batches of the same columns.
//!
//! # How a batch is decoded
//!
//! Each message is framed on its own (`frame.rs`): size limit, `C3 01`, the
//! 8-byte fingerprint looked up among the contract's kinds. Its payload is
//! then checked against the writer schema by a small walker (`check.rs`) that
//! gives the verdict the reference decoder (`schemas.codec.decode`) gives.
//! Only the payloads that pass are handed to arrow-avro, one
//! `DecoderMode::UnframedDatum` decoder per kind present, which builds the
//! columns; each call must consume exactly the payload.
//!
//! Why not arrow-avro's framed streaming decoder on the concatenated messages:
//!
//! * a body that fails half-way has already appended the fields read so far,
//!   so the columns no longer line up and one bad message spoils the batch;
//! * it reports no message boundaries: a record followed by extra bytes reads
//!   as a record and then a bad header, not as `trailing_bytes`, and a short
//!   message would swallow the start of the next one;
//! * fastavro, which the reference uses, accepts a few encodings that
//!   arrow-avro refuses (see `check.rs`); the checker accepts them too and
//!   re-encodes those payloads plainly, so both decoders agree on every message.
//!
//! The cost is a second, cheap pass over each payload; the SHA-256 of the
//! payload is computed in the same call.

mod batch;
mod check;
mod digest;
mod frame;
mod iso;
mod json;
mod kind;
mod ocf;
mod rows;
mod scan;
mod shape;
mod signatures;

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::batch::Contract;
use crate::kind::Kind;

/// How much of a container file is read at a time.
const READ_BUFFER: usize = 1 << 20;

/// A decoder for the record kinds of one contract, built once and used for every batch.
#[pyclass(frozen, module = "faceaudit_native")]
struct Decoder {
    contract: Arc<Contract>,
}

#[pymethods]
impl Decoder {
    /// `schemas` maps each kind to its writer schema (Avro JSON); `non_negative`
    /// maps a kind to the int/long fields that must not be negative;
    /// `region_codes` maps a kind to its string field holding a region code:
    /// six digits, the first two one of `provinces`.
    #[new]
    #[pyo3(signature = (schemas, non_negative = None, region_codes = None, provinces = Vec::new()))]
    fn new(
        schemas: &Bound<'_, PyDict>,
        non_negative: Option<&Bound<'_, PyDict>>,
        region_codes: Option<&Bound<'_, PyDict>>,
        provinces: Vec<String>,
    ) -> PyResult<Self> {
        let provinces = provinces
            .iter()
            .map(|p| match p.as_bytes() {
                &[a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Ok([a, b]),
                _ => Err(PyValueError::new_err(format!(
                    "province {p:?} is not two digits"
                ))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut kinds = Vec::with_capacity(schemas.len());
        for (name, schema) in schemas.iter() {
            let name: String = name.extract()?;
            let schema: String = schema.extract()?;
            let counts: Vec<String> = match non_negative.map(|d| d.get_item(&name)).transpose()? {
                Some(Some(fields)) => fields.extract()?,
                _ => Vec::new(),
            };
            let region: Option<String> =
                match region_codes.map(|d| d.get_item(&name)).transpose()? {
                    Some(Some(field)) => Some(field.extract()?),
                    _ => None,
                };
            let kind = Kind::new(&name, &schema, &counts, region.as_deref(), &provinces)
                .map_err(|e| PyValueError::new_err(format!("{name}: {e}")))?;
            kinds.push(kind);
        }
        for (what, given) in [
            ("non_negative", non_negative),
            ("region_codes", region_codes),
        ] {
            for name in given.iter().flat_map(|d| d.keys()) {
                if !schemas.contains(&name)? {
                    return Err(PyValueError::new_err(format!(
                        "{what} names unknown kind {name}"
                    )));
                }
            }
        }
        let contract = Contract::new(kinds).map_err(PyValueError::new_err)?;
        Ok(Self {
            contract: Arc::new(contract),
        })
    }

    /// Each kind's fingerprint: the 8 header bytes after `C3 01`.
    #[getter]
    fn fingerprints<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let fingerprints = PyDict::new(py);
        for kind in &self.contract.kinds {
            fingerprints.set_item(&kind.name, PyBytes::new(py, &kind.fingerprint))?;
        }
        Ok(fingerprints)
    }

    /// Decode `messages` (a message longer than `max_message_bytes` is
    /// `oversized`). Returns one `pyarrow.RecordBatch` per kind present, with
    /// every field of the record plus `message_index` and `payload_sha256`,
    /// and `(message_index, reason, detail)` for each message refused.
    #[allow(clippy::type_complexity)]
    fn decode_batch<'py>(
        &self,
        py: Python<'py>,
        messages: Vec<Option<Bound<'py, PyBytes>>>,
        max_message_bytes: usize,
    ) -> PyResult<(Bound<'py, PyDict>, Vec<(u32, &'static str, String)>)> {
        // Bytes objects are immutable and `messages` keeps them alive, so their
        // buffers can be read while other threads run.
        let views: Vec<Option<&[u8]>> = messages
            .iter()
            .map(|m| m.as_ref().map(|b| b.as_bytes()))
            .collect();
        let decoded = py
            .detach(|| self.contract.decode(&views, max_message_bytes))
            .map_err(PyRuntimeError::new_err)?;
        let batches = PyDict::new(py);
        for (kind, batch) in decoded.batches {
            batches.set_item(kind, batch.to_pyarrow(py)?)?;
        }
        let failures = decoded
            .failures
            .into_iter()
            .map(|(index, failure)| (index, failure.reason.name(), failure.detail))
            .collect();
        Ok((batches, failures))
    }
}

/// An Avro object container file of one kind, read in batches of good records.
#[pyclass(module = "faceaudit_native")]
struct Container {
    inner: ocf::Container,
}

#[pymethods]
impl Container {
    /// Open `source` (a path, or the file's bytes) and read its header.
    /// ValueError if the writer schema is not the decoder's schema of `kind`,
    /// or the codec is neither null nor deflate; OSError if it cannot be read.
    #[new]
    #[pyo3(signature = (decoder, source, kind, batch_rows, hashed))]
    fn new(
        py: Python<'_>,
        decoder: PyRef<'_, Decoder>,
        source: &Bound<'_, PyAny>,
        kind: &str,
        batch_rows: usize,
        hashed: bool,
    ) -> PyResult<Self> {
        let input: Box<dyn BufRead + Send + Sync> = if let Ok(bytes) = source.cast::<PyBytes>() {
            Box::new(Cursor::new(bytes.as_bytes().to_vec()))
        } else {
            let path: PathBuf = source.extract()?;
            Box::new(BufReader::with_capacity(READ_BUFFER, File::open(path)?))
        };
        let contract = Arc::clone(&decoder.contract);
        let inner = py
            .detach(|| ocf::Container::open(contract, kind, input, hashed, batch_rows))
            .map_err(PyValueError::new_err)?;
        Ok(Self { inner })
    }

    /// `null` or `deflate`.
    #[getter]
    fn codec(&self) -> &'static str {
        self.inner.codec.name()
    }

    /// Where the first block starts.
    #[getter]
    fn header_len(&self) -> u64 {
        self.inner.header_len
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// `(batch or None, bad)`: up to `batch_rows` good records, and
    /// `(record number, "invalid" | "undecodable", detail)` for each bad one.
    #[allow(clippy::type_complexity)]
    fn __next__<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(Option<Bound<'py, PyAny>>, Vec<(u32, &'static str, String)>)>> {
        let inner = &mut self.inner;
        let Some(read) = py
            .detach(|| inner.next_read())
            .map_err(PyRuntimeError::new_err)?
        else {
            return Ok(None);
        };
        let batch = read.batch.map(|b| b.to_pyarrow(py)).transpose()?;
        let bad = read
            .bad
            .into_iter()
            .map(|(number, bad)| match bad {
                ocf::Bad::Invalid(detail) => (number, "invalid", detail),
                ocf::Bad::Undecodable(detail) => (number, "undecodable", detail),
            })
            .collect();
        Ok(Some((batch, bad)))
    }
}

/// A JSON-lines input read in chunks of lines into batches of the kinds named.
#[pyclass(module = "faceaudit_native")]
struct JsonLines {
    inner: json::JsonFile,
}

#[pymethods]
impl JsonLines {
    /// Read `source` (a path, or the input's bytes), taking lines of the
    /// `kinds` named, about `chunk_bytes` of lines at a time. OSError if the
    /// file cannot be opened; ValueError for a kind `decoder` does not know.
    #[new]
    #[pyo3(signature = (decoder, kinds, source, chunk_bytes))]
    fn new(
        decoder: PyRef<'_, Decoder>,
        kinds: Vec<String>,
        source: &Bound<'_, PyAny>,
        chunk_bytes: usize,
    ) -> PyResult<Self> {
        let lines = json::JsonLines::new(Arc::clone(&decoder.contract), &kinds)
            .map_err(PyValueError::new_err)?;
        let input: Box<dyn Read + Send + Sync> = if let Ok(bytes) = source.cast::<PyBytes>() {
            Box::new(Cursor::new(bytes.as_bytes().to_vec()))
        } else {
            let path: PathBuf = source.extract()?;
            Box::new(File::open(path)?)
        };
        Ok(Self {
            inner: json::JsonFile::new(lines, input, chunk_bytes),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// `(batches by kind, lines handed back)`: a batch per kind of the lines
    /// taken, and `(line number, line)` for each line left to the caller.
    #[allow(clippy::type_complexity)]
    fn __next__<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyDict>, Vec<(u32, Bound<'py, PyBytes>)>)>> {
        let inner = &mut self.inner;
        let Some(parsed) = py
            .detach(|| inner.next_chunk())
            .map_err(PyRuntimeError::new_err)?
        else {
            return Ok(None);
        };
        let batches = PyDict::new(py);
        for (kind, batch) in parsed.batches {
            batches.set_item(kind, batch.to_pyarrow(py)?)?;
        }
        let chunk = self.inner.chunk();
        let handed_back = parsed
            .handed_back
            .into_iter()
            .map(|(number, start, end)| (number, PyBytes::new(py, &chunk[start..end])))
            .collect();
        Ok(Some((batches, handed_back)))
    }
}

/// The SHA-256 of each row of `batch` (`digest.rs` gives the encoding), 32 bytes each, in
/// row order; ValueError for a column of a type it does not hash.
#[pyfunction]
fn row_hashes<'py>(py: Python<'py>, batch: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let batch = RecordBatch::from_pyarrow_bound(batch)?;
    let hashes = py
        .detach(|| digest::row_hashes(&batch))
        .map_err(PyValueError::new_err)?;
    Ok(PyBytes::new(py, hashes.as_flattened()))
}

/// RFC 6962's Merkle tree hash of `leaves` (32 bytes each, concatenated): in the order
/// given, or with `sort`, in byte order (a batch's root, whatever order its rows come in).
#[pyfunction]
#[pyo3(signature = (leaves, *, sort = false))]
fn merkle_root<'py>(py: Python<'py>, leaves: &[u8], sort: bool) -> PyResult<Bound<'py, PyBytes>> {
    if !leaves.len().is_multiple_of(32) {
        return Err(PyValueError::new_err(format!(
            "leaves are 32 bytes each, not {} bytes in all",
            leaves.len()
        )));
    }
    let mut leaves: Vec<digest::Hash> = leaves
        .chunks_exact(32)
        .map(|chunk| chunk.try_into().expect("32 bytes"))
        .collect();
    let root = py.detach(|| {
        if sort {
            leaves.sort_unstable();
        }
        digest::merkle_root(&leaves)
    });
    Ok(PyBytes::new(py, &root))
}

/// The lines of `source` (a path, or the input's bytes) that hold any of `markers`, in
/// order, each once, with its newline; read `block_bytes` at a time without the GIL.
/// OSError if it cannot be read, ValueError for an empty marker or block.
#[pyfunction]
#[pyo3(signature = (source, markers, *, block_bytes = READ_BUFFER))]
fn lines_holding<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    markers: Vec<Vec<u8>>,
    block_bytes: usize,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    if markers.iter().any(Vec::is_empty) || block_bytes == 0 {
        return Err(PyValueError::new_err("markers and blocks cannot be empty"));
    }
    let lines = if let Ok(bytes) = source.cast::<PyBytes>() {
        let data = bytes.as_bytes();
        py.detach(|| scan::lines_holding(data, &markers, block_bytes))?
    } else {
        let path: PathBuf = source.extract()?;
        py.detach(|| scan::lines_holding(File::open(path)?, &markers, block_bytes))?
    };
    Ok(lines.iter().map(|line| PyBytes::new(py, line)).collect())
}

/// Whether each `(public_key, message, signature)` verifies (Ed25519, RFC 8032), in order;
/// checked on the cores there are, without the GIL.
#[pyfunction]
fn verify_ed25519(
    py: Python<'_>,
    signed: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>, Bound<'_, PyBytes>)>,
) -> Vec<bool> {
    let items: Vec<signatures::Signed> = signed
        .iter()
        .map(|(key, message, signature)| signatures::Signed {
            key: key.as_bytes(),
            message: message.as_bytes(),
            signature: signature.as_bytes(),
        })
        .collect();
    py.detach(|| signatures::verify_all(&items))
}

#[pymodule]
fn faceaudit_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Decoder>()?;
    module.add_class::<Container>()?;
    module.add_class::<JsonLines>()?;
    module.add_function(wrap_pyfunction!(row_hashes, module)?)?;
    module.add_function(wrap_pyfunction!(merkle_root, module)?)?;
    module.add_function(wrap_pyfunction!(verify_ed25519, module)?)?;
    module.add_function(wrap_pyfunction!(lines_holding, module)?)?;
    Ok(())
}
