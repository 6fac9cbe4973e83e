//! An Avro object container file of one kind, read into Arrow batches with
//! the verdicts of the offline checker's reference reader (fastavro's
//! `reader`, then `schemas.codec.encode_payload` on each record).
//!
//! The header is arrow-avro's (`read_header_info`). The blocks are read here
//! rather than by arrow-avro's `Reader`, which checks a block's sync marker
//! before its records and fails the whole read at a bad record, because the
//! reference reads a container as follows, and the record numbers it reports
//! must come out the same:
//!
//! * a block is a count, a byte size, that many bytes (inflated as zlib's
//!   `decompressobj(-15).decompress` does for deflate: a cut stream gives what
//!   it holds, bytes after its end are ignored), then the 16-byte sync marker;
//! * the block's records are read one after another, as many as the count
//!   says (none if it is not positive), and whatever follows them in the block
//!   is ignored; the sync marker is checked after them;
//! * the input may end only where a block count would start;
//! * a record whose bytes do not decode ends the file: what follows cannot be
//!   located. A record that decodes but holds an int too wide for 32 bits or
//!   a negative count is reported and skipped, and reading goes on.
//!
//! Each good record's hash is the SHA-256 of its plain re-encoding
//! (`check.rs`), the bytes the reference hashes.

use std::io::{BufRead, Read};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_avro::compression::CompressionCodec;
use arrow_avro::reader::read_header_info;
use arrow_avro::schema::{Fingerprint, FingerprintAlgorithm};
use flate2::{Decompress, FlushDecompress, Status};

use crate::batch::Contract;
use crate::check::{Problem, read_record, read_varint};

const SYNC_SIZE: usize = 16;

/// How a container's blocks are compressed: the codecs read here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Null,
    Deflate,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Deflate => "deflate",
        }
    }
}

/// What is wrong with a record, by record number (from 1).
#[derive(Debug)]
pub enum Bad {
    /// The record is unusable and skipped: the reference's message.
    Invalid(String),
    /// The bytes do not decode here, so the rest of the file is skipped.
    Undecodable(String),
}

/// One step of the read: a batch of good records (if any) and the bad ones met on the way.
pub struct Output {
    pub batch: Option<RecordBatch>,
    pub bad: Vec<(u32, Bad)>,
}

struct Block {
    data: Vec<u8>,
    pos: usize,
    left: i64,
}

pub struct Container {
    contract: Arc<Contract>,
    kind: usize,
    input: Box<dyn BufRead + Send + Sync>,
    pub codec: Codec,
    sync: [u8; SYNC_SIZE],
    pub header_len: u64,
    hashed: bool,
    batch_rows: usize,
    number: u32,
    block: Option<Block>,
    finished: bool,
}

impl Container {
    /// Read the header of `input`; refuses a container whose writer schema is
    /// not the contract's schema of `kind` or whose codec is not read here.
    /// `hashed`: fill `payload_sha256`.
    pub fn open(
        contract: Arc<Contract>,
        kind: &str,
        mut input: Box<dyn BufRead + Send + Sync>,
        hashed: bool,
        batch_rows: usize,
    ) -> Result<Self, String> {
        let position = contract
            .kinds
            .iter()
            .position(|k| k.name == kind)
            .ok_or_else(|| format!("unknown kind {kind}"))?;
        let known = &contract.kinds[position];
        if !known.fields.iter().any(|f| f.shape.takes_bytes()) {
            return Err(format!("{kind} records can take no bytes"));
        }
        let header = read_header_info(&mut input).map_err(|e| format!("header: {e}"))?;
        let schema = header.writer_schema().map_err(|e| e.to_string())?;
        match schema.fingerprint(FingerprintAlgorithm::Rabin) {
            Ok(Fingerprint::Rabin(crc)) if crc.to_le_bytes() == known.fingerprint => {}
            _ => {
                return Err(format!(
                    "the writer schema is not the contract's {kind} schema"
                ));
            }
        }
        let codec = match header.compression() {
            Ok(None) => Codec::Null,
            Ok(Some(CompressionCodec::Deflate)) => Codec::Deflate,
            Ok(Some(other)) => return Err(format!("codec {other:?} is not read here")),
            Err(e) => return Err(e.to_string()),
        };
        Ok(Self {
            contract,
            kind: position,
            input,
            codec,
            sync: header.sync(),
            header_len: header.header_len(),
            hashed,
            batch_rows: batch_rows.max(1),
            number: 1,
            block: None,
            finished: false,
        })
    }

    /// The next batch of up to `batch_rows` good records and the bad records
    /// before it; `None` once the file is read.
    pub fn next_read(&mut self) -> Result<Option<Output>, String> {
        let contract = Arc::clone(&self.contract);
        let kind = &contract.kinds[self.kind];
        let mut rows = kind.rows(self.batch_rows)?;
        let mut bad = Vec::new();
        while !self.finished && !rows.is_full() {
            let Some(block) = self.block.as_mut() else {
                match self.next_block() {
                    Ok(block) => self.block = block,
                    Err(problem) => self.stop(&mut bad, problem),
                }
                continue;
            };
            if block.left <= 0 {
                let mut sync = [0_u8; SYNC_SIZE];
                self.block = None;
                match read_up_to(&mut self.input, &mut sync) {
                    Ok(SYNC_SIZE) if sync == self.sync => {}
                    Ok(_) => self.stop(&mut bad, "expected sync marker not found".to_string()),
                    Err(e) => self.stop(&mut bad, e.to_string()),
                }
                continue;
            }
            let data = &block.data[block.pos..];
            let record = match read_record(&kind.fields, &kind.constraints, data) {
                Ok(record) => record,
                Err(Problem::Unreadable { at, field, what }) => {
                    let problem = format!(
                        "{}.{field} at block byte {}: {what}",
                        kind.name,
                        block.pos + at
                    );
                    self.stop(&mut bad, problem);
                    continue;
                }
                Err(other) => return Err(format!("unexpected {other:?}")),
            };
            let number = self.number;
            self.number = number.checked_add(1).ok_or("more than 2**32 records")?;
            block.pos += record.end;
            block.left -= 1;
            let raw = &data[..record.end];
            match record.verdict {
                Ok(plain) => {
                    let plain = plain.as_deref().unwrap_or(raw);
                    rows.push(number, plain, self.hashed.then_some(plain))?;
                }
                Err(problem) => bad.push((number, Bad::Invalid(kind.invalid_message(&problem)))),
            }
        }
        let batch = rows.finish()?;
        if batch.is_none() && bad.is_empty() {
            return Ok(None);
        }
        Ok(Some(Output { batch, bad }))
    }

    /// The rest of the file is skipped because of `problem`, at the next record number.
    fn stop(&mut self, bad: &mut Vec<(u32, Bad)>, problem: String) {
        bad.push((self.number, Bad::Undecodable(problem)));
        self.finished = true;
        self.block = None;
    }

    /// The next block, `None` at the end of the input, or what stops the read.
    fn next_block(&mut self) -> Result<Option<Block>, String> {
        let count = match self.read_long()? {
            Some(count) => count,
            None => {
                self.finished = true;
                return Ok(None);
            }
        };
        let size = self
            .read_long()?
            .ok_or("the file ends before the block size")?;
        let size = u64::try_from(size).map_err(|_| format!("block size {size} is negative"))?;
        let mut raw = Vec::new();
        let got = Read::take(&mut self.input, size)
            .read_to_end(&mut raw)
            .map_err(|e| e.to_string())?;
        if (got as u64) < size {
            return Err(format!("a block of {size} bytes, only {got} in the file"));
        }
        let data = match self.codec {
            Codec::Null => raw,
            Codec::Deflate => inflate(&raw)?,
        };
        Ok(Some(Block {
            data,
            pos: 0,
            left: count,
        }))
    }

    /// A long read from the input; `None` if the input ends before its first byte.
    fn read_long(&mut self) -> Result<Option<i64>, String> {
        let mut first = true;
        let mut ended_at_first = false;
        let mut failed = None;
        let input = &mut self.input;
        let value = read_varint(|| {
            let byte = match input.fill_buf() {
                Ok([]) => None,
                Ok(buf) => Some(buf[0]),
                Err(e) => {
                    failed = Some(e.to_string());
                    None
                }
            };
            if byte.is_some() {
                input.consume(1);
            } else if first {
                ended_at_first = true;
            }
            first = false;
            byte
        });
        if let Some(e) = failed {
            return Err(e);
        }
        match value {
            Some((value, _)) => Ok(Some(value)),
            None if ended_at_first => Ok(None),
            None => Err("the file ends inside a varint".to_string()),
        }
    }
}

/// Fill `buf` from `input` as far as it goes; how many bytes were read.
fn read_up_to(input: &mut dyn BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Raw deflate as `zlib.decompressobj(-15).decompress(data)`: everything the
/// data holds up to the end of the stream; a stream cut short is no error.
fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).max(1024));
    loop {
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(data.len());
        let produced = inflater.total_out();
        let status = inflater
            .decompress_vec(&data[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|e| format!("deflate data does not inflate: {e}"))?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
            continue;
        }
        let stalled = inflater.total_out() == produced
            && usize::try_from(inflater.total_in()).unwrap_or(data.len()) == consumed;
        if stalled || usize::try_from(inflater.total_in()).unwrap_or(data.len()) == data.len() {
            return Ok(out);
        }
    }
}
