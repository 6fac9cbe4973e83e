//! The Arrow batch of one kind, built a record at a time: the record's fields
//! as arrow-avro maps them, then `message_index` and `payload_sha256`.
//!
//! Every reader hands its records over as plain Avro bodies (see `check.rs`),
//! so all of them give batches of one schema per kind. The hash column is
//! nullable: JSON records have no payload bytes to hash.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field as ArrowField, Schema};
use sha2::{Digest, Sha256};

use crate::frame::push_hex;

/// The columns added after the record's fields.
pub const MESSAGE_INDEX: &str = "message_index";
pub const PAYLOAD_SHA256: &str = "payload_sha256";

pub struct Rows {
    kind: String,
    decoder: arrow_avro::reader::Decoder,
    capacity: usize,
    indexes: Vec<u32>,
    hashes: StringBuilder,
    hash: String,
}

impl Rows {
    /// Room for `capacity` records of `kind`, read by `decoder` (built for that many rows).
    pub fn new(kind: &str, decoder: arrow_avro::reader::Decoder, capacity: usize) -> Self {
        Self {
            kind: kind.to_string(),
            decoder,
            capacity,
            indexes: Vec::with_capacity(capacity),
            hashes: StringBuilder::with_capacity(capacity, capacity * 64),
            hash: String::with_capacity(64),
        }
    }

    pub fn len(&self) -> usize {
        self.indexes.len()
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Add one record: `plain` is its body in plain Avro, `hashed` the bytes
    /// whose SHA-256 goes in `payload_sha256` (null when `None`).
    pub fn push(&mut self, index: u32, plain: &[u8], hashed: Option<&[u8]>) -> Result<(), String> {
        // The body was checked (or written) here, so arrow-avro must read it whole;
        // anything else is a bug, and the whole call fails rather than misalign rows.
        match self.decoder.decode(plain) {
            Ok(used) if used == plain.len() => {}
            outcome => {
                return Err(format!(
                    "arrow-avro disagrees with the checker on record {index} ({}): {outcome:?}",
                    self.kind
                ));
            }
        }
        self.indexes.push(index);
        match hashed {
            Some(bytes) => {
                self.hash.clear();
                push_hex(&mut self.hash, &Sha256::digest(bytes));
                self.hashes.append_value(&self.hash);
            }
            None => self.hashes.append_null(),
        }
        Ok(())
    }

    /// The batch of the records pushed, or `None` if there are none.
    pub fn finish(mut self) -> Result<Option<RecordBatch>, String> {
        if self.indexes.is_empty() {
            return Ok(None);
        }
        let records = self
            .decoder
            .flush()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("arrow-avro returned no {} rows", self.kind))?;
        let mut fields = records.schema().fields().to_vec();
        fields.push(Arc::new(ArrowField::new(
            MESSAGE_INDEX,
            DataType::UInt32,
            false,
        )));
        fields.push(Arc::new(ArrowField::new(
            PAYLOAD_SHA256,
            DataType::Utf8,
            true,
        )));
        let schema = Schema::new_with_metadata(fields, records.schema().metadata().clone());
        let mut columns = records.columns().to_vec();
        columns.extend([
            Arc::new(UInt32Array::from(self.indexes)) as ArrayRef,
            Arc::new(self.hashes.finish()),
        ]);
        RecordBatch::try_new(Arc::new(schema), columns)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
