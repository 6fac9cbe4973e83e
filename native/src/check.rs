//! Checks one Avro payload against its writer schema the way the reference
//! decoder (`schemas.codec.decode`, fastavro underneath) judges it.
//!
//! fastavro is more lenient than arrow-avro in a few places, and the reference
//! is what decides which messages are dead letters, so this follows fastavro:
//!
//! * varints may be longer than ten bytes; each byte's seven bits are shifted
//!   by `7 * i` modulo 64 and bits past 64 are lost (its C reader on x86-64);
//! * an enum symbol or union branch may be indexed from the end, as Python
//!   lists are (`-1` is the last one);
//! * a negative array block count is followed by a byte size that is read and
//!   ignored.
//!
//! arrow-avro refuses such bytes, so a payload that uses any of them is
//! re-encoded in the plain form (same values) before arrow-avro sees it. The
//! checker also applies what the reference checks after reading: ints that fit
//! 32 bits (here at any depth; the contract has them only at the top level,
//! where the reference looks) and the counts that must not be negative.

use crate::shape::{Field, Shape};

/// `datetime(1, 1, 1, tzinfo=UTC)` and `datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)`
/// in microseconds since the epoch: fastavro fails to read a timestamp outside them.
const FIRST_MICROS: i64 = -62_135_596_800_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

/// Why a payload is not a valid record, in the reference's terms.
#[derive(Debug)]
pub enum Problem {
    /// The bytes do not decode: reading `field` stopped at payload offset `at`.
    Unreadable {
        at: usize,
        field: String,
        what: String,
    },
    /// A complete record ends at payload offset `end`, `left` bytes before the payload does.
    Trailing { end: usize, left: usize },
    /// An `int` holding a value that needs more than 32 bits.
    NotInt32 { field: String, value: i64 },
    /// A count that must not be negative is.
    Negative { field: String, value: i64 },
}

/// Check `payload` against the top-level `fields`, `non_negative` naming the
/// indexes of the fields that must not be negative. On success, returns the
/// payload re-encoded in plain Avro when it used a form arrow-avro does not
/// read, or `None` when the bytes can be handed on as they are.
pub fn check(
    fields: &[Field],
    non_negative: &[usize],
    payload: &[u8],
) -> Result<Option<Vec<u8>>, Problem> {
    let mut walk = Walk::new(payload, None);
    let integers = walk.top_level(fields)?;
    if walk.pos != payload.len() {
        return Err(Problem::Trailing {
            end: walk.pos,
            left: payload.len() - walk.pos,
        });
    }
    if let Some((index, value)) = walk.not_int32 {
        return Err(Problem::NotInt32 {
            field: fields[index].name.clone(),
            value,
        });
    }
    let negative = non_negative
        .iter()
        .find_map(|&index| integers[index].filter(|v| *v < 0).map(|v| (index, v)));
    if let Some((index, value)) = negative {
        return Err(Problem::Negative {
            field: fields[index].name.clone(),
            value,
        });
    }
    if !walk.unusual {
        return Ok(None);
    }
    let mut plain = Vec::with_capacity(payload.len());
    Walk::new(payload, Some(&mut plain)).top_level(fields)?;
    Ok(Some(plain))
}

/// Where a value stopped being readable, before the field name is known.
struct Stop(String);

/// A cursor over one payload, optionally writing the plain encoding of what it reads.
struct Walk<'a, 'o> {
    data: &'a [u8],
    pos: usize,
    out: Option<&'o mut Vec<u8>>,
    /// Some value was written in a form arrow-avro does not read.
    unusual: bool,
    /// The first out-of-range `int`: the top-level field it is in, and its value.
    not_int32: Option<(usize, i64)>,
    field: usize,
}

impl<'a, 'o> Walk<'a, 'o> {
    fn new(data: &'a [u8], out: Option<&'o mut Vec<u8>>) -> Self {
        Self {
            data,
            pos: 0,
            out,
            unusual: false,
            not_int32: None,
            field: 0,
        }
    }

    /// Read every field; returns each one's integer value, if it has one.
    fn top_level(&mut self, fields: &[Field]) -> Result<Vec<Option<i64>>, Problem> {
        fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                self.field = index;
                self.value(&field.shape)
                    .map_err(|Stop(what)| Problem::Unreadable {
                        at: self.pos,
                        field: field.name.clone(),
                        what,
                    })
            })
            .collect()
    }

    /// Read one value of `shape`; returns it when it is an integer.
    fn value(&mut self, shape: &Shape) -> Result<Option<i64>, Stop> {
        match shape {
            Shape::Null => {}
            Shape::Boolean => {
                let byte = self.bytes(1)?[0];
                self.write_raw(&[u8::from(byte != 0)]);
            }
            Shape::Int => {
                let value = self.long()?;
                if i32::try_from(value).is_err() && self.not_int32.is_none() {
                    self.not_int32 = Some((self.field, value));
                }
                return Ok(Some(value));
            }
            Shape::Long => return self.long().map(Some),
            Shape::Timestamp => {
                let micros = self.long()?;
                if !(FIRST_MICROS..=LAST_MICROS).contains(&micros) {
                    return Err(Stop(format!(
                        "timestamp {micros} µs is outside years 1 to 9999"
                    )));
                }
            }
            Shape::Float => self.copy(4)?,
            Shape::Double => self.copy(8)?,
            Shape::Bytes => {
                self.sized()?;
            }
            Shape::String => {
                let text = self.sized()?;
                std::str::from_utf8(text).map_err(|e| Stop(format!("string is not UTF-8: {e}")))?;
            }
            Shape::Enum { symbols } => {
                self.index(*symbols, "enum symbol")?;
            }
            Shape::Union(branches) => {
                let branch = self.index(branches.len(), "union branch")?;
                return self.value(&branches[branch]);
            }
            Shape::Array(items) => self.array(items)?,
            Shape::Record(fields) => {
                for field in fields {
                    self.value(&field.shape)?;
                }
            }
        }
        Ok(None)
    }

    fn array(&mut self, items: &Shape) -> Result<(), Stop> {
        loop {
            let mut count = self.long_unwritten()?;
            if count < 0 {
                self.long_unwritten()?; // the block's size in bytes: fastavro ignores it
                self.unusual = true;
                // i64::MIN stays negative, and Python's range() of it is empty.
                count = count.wrapping_neg();
            }
            if count == 0 {
                break;
            }
            if count > 0 {
                self.write_long(count);
                // Terminates: every item takes at least one byte (shape.rs).
                for _ in 0..count {
                    self.value(items)?;
                }
            }
        }
        self.write_long(0);
        Ok(())
    }

    /// An enum or union index; Python's negative indexing included.
    fn index(&mut self, len: usize, what: &str) -> Result<usize, Stop> {
        let raw = self.long_unwritten()?;
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        if !(-len..len).contains(&raw) {
            return Err(Stop(format!(
                "{what} {raw} is out of range ({len} in the schema)"
            )));
        }
        let index = if raw < 0 { raw + len } else { raw };
        self.unusual |= raw < 0;
        self.write_long(index);
        Ok(usize::try_from(index).unwrap_or_default())
    }

    /// A length-prefixed value (bytes, string), copied through.
    fn sized(&mut self) -> Result<&'a [u8], Stop> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| Stop(format!("negative length {len}")))?;
        let bytes = self.bytes(len)?;
        self.write_raw(bytes);
        Ok(bytes)
    }

    fn copy(&mut self, len: usize) -> Result<(), Stop> {
        let bytes = self.bytes(len)?;
        self.write_raw(bytes);
        Ok(())
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], Stop> {
        let rest = &self.data[self.pos..];
        if rest.len() < len {
            return Err(Stop(format!("needs {len} bytes, {} left", rest.len())));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn long(&mut self) -> Result<i64, Stop> {
        let value = self.long_unwritten()?;
        self.write_long(value);
        Ok(value)
    }

    /// A zig-zag varint as fastavro reads it (see the module comment).
    fn long_unwritten(&mut self) -> Result<i64, Stop> {
        let start = self.pos;
        let mut bits = 0_u64;
        let mut shift = 0_u32;
        loop {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(Stop("ends inside a varint".to_string()));
            };
            self.pos += 1;
            bits |= u64::from(byte & 0x7f).wrapping_shl(shift);
            shift = shift.wrapping_add(7);
            if byte & 0x80 == 0 {
                break;
            }
        }
        // Not plain: longer than needed, or ten bytes whose last one carries
        // bits past the 64th (the only way a varint of plain length differs).
        let read = self.pos - start;
        let last = u64::from(self.data[self.pos - 1]);
        self.unusual |= read != varint_len(bits) || last != bits >> (7 * (read - 1));
        Ok(((bits >> 1) ^ (bits & 1).wrapping_neg()).cast_signed())
    }

    fn write_long(&mut self, value: i64) {
        if let Some(out) = self.out.as_deref_mut() {
            let mut bits = ((value << 1) ^ (value >> 63)).cast_unsigned();
            while bits >= 0x80 {
                out.push((bits as u8) | 0x80);
                bits >>= 7;
            }
            out.push(bits as u8);
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(bytes);
        }
    }
}

/// How many bytes the shortest varint of `bits` takes.
fn varint_len(bits: u64) -> usize {
    (64 - bits.leading_zeros() as usize).div_ceil(7).max(1)
}
