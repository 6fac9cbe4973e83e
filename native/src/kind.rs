//! One record kind: its writer schema, fingerprint, checks, and the Arrow
//! batch of its good messages.

use arrow_array::RecordBatch;
use arrow_avro::codec::Tz;
use arrow_avro::reader::{DecoderMode, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use crate::check::{Constraints, Problem, check};
use crate::frame::{Failure, HEADER_SIZE, Reason};
use crate::rows::{MESSAGE_INDEX, PAYLOAD_SHA256, Rows};
use crate::shape::{self, Field, Shape};

/// A message that passed every check, waiting for arrow-avro.
pub struct Good<'m> {
    pub index: u32,
    /// The bytes after the header, as received: what the hash covers.
    pub payload: &'m [u8],
    /// The same record in plain Avro, when the received bytes are not.
    pub plain: Option<Vec<u8>>,
}

pub struct Kind {
    pub name: String,
    pub fingerprint: [u8; 8],
    schema: AvroSchema,
    pub fields: Vec<Field>,
    /// What the values must meet beyond the schema.
    pub constraints: Constraints,
}

impl Kind {
    /// `non_negative` names the integer fields that must not be negative,
    /// `region` the string field holding a region code, whose first two
    /// digits must be one of `provinces`.
    pub fn new(
        name: &str,
        schema_json: &str,
        non_negative: &[String],
        region: Option<&str>,
        provinces: &[[u8; 2]],
    ) -> Result<Self, String> {
        let fields = shape::parse(schema_json)?;
        if let Some(clash) = fields
            .iter()
            .find(|f| [MESSAGE_INDEX, PAYLOAD_SHA256].contains(&f.name.as_str()))
        {
            return Err(format!(
                "field {} clashes with a column the decoder adds",
                clash.name
            ));
        }
        let non_negative = non_negative
            .iter()
            .map(|wanted| {
                fields
                    .iter()
                    .position(|f| f.name == *wanted && f.shape.is_integer())
                    .ok_or_else(|| format!("{wanted} is not an int or long field"))
            })
            .collect::<Result<_, _>>()?;
        let region = region
            .map(|wanted| {
                fields
                    .iter()
                    .position(|f| f.name == wanted && matches!(f.shape, Shape::String))
                    .ok_or_else(|| format!("{wanted} is not a string field"))
            })
            .transpose()?;
        let constraints = Constraints {
            non_negative,
            region,
            provinces: provinces.to_vec(),
        };
        let schema = AvroSchema::new(schema_json.to_string());
        // CRC-64-AVRO of the parsing canonical form; the header carries it little-endian.
        let fingerprint = match schema.fingerprint(FingerprintAlgorithm::Rabin) {
            Ok(Fingerprint::Rabin(crc)) => crc.to_le_bytes(),
            Ok(other) => return Err(format!("unexpected fingerprint {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let kind = Self {
            name: name.to_string(),
            fingerprint,
            schema,
            fields,
            constraints,
        };
        kind.arrow_decoder(1)?; // refuse now a schema arrow-avro cannot read
        Ok(kind)
    }

    /// Check one payload: the message's plain bytes if it is good.
    pub fn check<'m>(&self, index: u32, payload: &'m [u8]) -> Result<Good<'m>, Failure> {
        let plain =
            check(&self.fields, &self.constraints, payload).map_err(|p| self.failure(&p))?;
        Ok(Good {
            index,
            payload,
            plain,
        })
    }

    fn failure(&self, problem: &Problem) -> Failure {
        let kind = &self.name;
        match problem {
            Problem::Unreadable { at, field, what } => Failure::new(
                Reason::InvalidPayload,
                format!(
                    "{kind} payload does not decode (stopped near message byte {}): \
                     {kind}.{field}: {what}",
                    HEADER_SIZE + at
                ),
            ),
            Problem::Trailing { end, left } => Failure::new(
                Reason::TrailingBytes,
                format!(
                    "{kind} record ends at message byte {}, {left} bytes left over",
                    HEADER_SIZE + end
                ),
            ),
            Problem::NotInt32 { field, value } => Failure::new(
                Reason::InvalidPayload,
                format!("{kind}.{field} = {value} is not a 32-bit int"),
            ),
            Problem::Negative { field, value } => Failure::new(
                Reason::SchemaInvalid,
                format!("{kind}.{field} is {value}; it must be >= 0"),
            ),
            Problem::BadRegion { field } => {
                Failure::new(Reason::SchemaInvalid, region_message(kind, field))
            }
        }
    }

    /// What `schemas.codec.encode_payload` says of a record whose values are
    /// wrong (`NotInt32` or `Negative`): the offline checker's message.
    pub fn invalid_message(&self, problem: &Problem) -> String {
        let kind = &self.name;
        match problem {
            Problem::NotInt32 { field, value } => {
                let declared = self
                    .fields
                    .iter()
                    .find(|f| f.name == *field)
                    .map_or_else(|| "int (32-bit)".to_string(), |f| f.shape.describe());
                format!("{kind}.{field}: expected {declared}, got int {value}")
            }
            Problem::Negative { field, value } => {
                format!("{kind}.{field} is {value}; it must be >= 0")
            }
            Problem::BadRegion { field } => region_message(kind, field),
            other => self.failure(other).detail,
        }
    }

    fn arrow_decoder(&self, rows: usize) -> Result<arrow_avro::reader::Decoder, String> {
        let mut store = SchemaStore::new();
        let fingerprint = store
            .register(self.schema.clone())
            .map_err(|e| e.to_string())?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_active_fingerprint(fingerprint)
            .with_decoder_mode(DecoderMode::UnframedDatum)
            .with_batch_size(rows)
            .with_tz(Tz::Utc)
            .build_decoder()
            .map_err(|e| format!("arrow-avro cannot read the {} schema: {e}", self.name))
    }

    /// An empty batch of this kind with room for `capacity` records.
    pub fn rows(&self, capacity: usize) -> Result<Rows, String> {
        Ok(Rows::new(
            &self.name,
            self.arrow_decoder(capacity.max(1))?,
            capacity,
        ))
    }

    /// One batch of `good` (never empty): every field as arrow-avro maps it,
    /// then the message indexes and the hashes of the payloads as received.
    pub fn batch(&self, good: &[Good<'_>]) -> Result<RecordBatch, String> {
        let mut rows = self.rows(good.len())?;
        for message in good {
            let plain = message.plain.as_deref().unwrap_or(message.payload);
            rows.push(message.index, plain, Some(message.payload))?;
        }
        rows.finish()?
            .ok_or_else(|| format!("no {} rows", self.name))
    }
}

/// What `schemas.codec` says of a region code that does not fit.
fn region_message(kind: &str, field: &str) -> String {
    format!("{kind}.{field} must be six digits starting with a province code (GB/T 2260)")
}
