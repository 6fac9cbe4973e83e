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
//! plain form is what fastavro writes when it encodes the values it read
//! (`schemas.codec.encode_payload`): shortest varints, indexes from the front,
//! an array as one block, booleans as 0 or 1, a signalling NaN float quietened
//! as the C cast to double and back quietens it. So its hash is the hash the
//! offline checker's reference gives a record of a container file.
//!
//! The checker also applies what the reference checks after reading: ints that
//! fit 32 bits (here at any depth; the contract has them only at the top level,
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
    /// A region code that is not six digits starting with a known province's two.
    BadRegion { field: String },
}

/// What a kind's values must meet beyond their schema.
#[derive(Default)]
pub struct Constraints {
    /// The indexes of the fields that must not be negative, in the order they are checked.
    pub non_negative: Vec<usize>,
    /// The index of the top-level string field holding a region code, if any.
    pub region: Option<usize>,
    /// The two-digit province prefixes a region code may start with.
    pub provinces: Vec<[u8; 2]>,
}

impl Constraints {
    /// Six ASCII digits whose first two are a known province's.
    pub fn region_fits(&self, code: &[u8]) -> bool {
        code.len() == 6
            && code.iter().all(u8::is_ascii_digit)
            && self.provinces.iter().any(|p| code[..2] == p[..])
    }
}

/// Check `payload` against the top-level `fields` and what `constraints`
/// asks of their values. On success, returns the payload re-encoded in plain
/// Avro when it is not plain already, or `None` when the bytes can be handed
/// on as they are.
pub fn check(
    fields: &[Field],
    constraints: &Constraints,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, Problem> {
    let record = read_record(fields, constraints, payload)?;
    if record.end != payload.len() {
        return Err(Problem::Trailing {
            end: record.end,
            left: payload.len() - record.end,
        });
    }
    record.verdict
}

/// One record read from the start of a buffer that may hold more after it.
pub struct Record {
    /// Where the record ends.
    pub end: usize,
    /// The plain re-encoding (`None` when the bytes are plain), or what is
    /// wrong with the values read: `NotInt32`, `Negative` or `BadRegion`.
    pub verdict: Result<Option<Vec<u8>>, Problem>,
}

/// Read one record of `fields` from the start of `data`; `Unreadable` when
/// its bytes do not decode, so where it ends is unknown.
pub fn read_record(
    fields: &[Field],
    constraints: &Constraints,
    data: &[u8],
) -> Result<Record, Problem> {
    let mut walk = Walk::new(data, None);
    walk.region = constraints.region;
    let integers = walk.top_level(fields)?;
    let end = walk.pos;
    let verdict = if let Some((index, value)) = walk.not_int32 {
        Err(Problem::NotInt32 {
            field: fields[index].name.clone(),
            value,
        })
    } else if let Some((index, value)) = constraints
        .non_negative
        .iter()
        .find_map(|&index| integers[index].filter(|v| *v < 0).map(|v| (index, v)))
    {
        Err(Problem::Negative {
            field: fields[index].name.clone(),
            value,
        })
    } else if let Some(index) = constraints.region.filter(|_| {
        !walk
            .region_text
            .is_some_and(|(from, to)| constraints.region_fits(&data[from..to]))
    }) {
        Err(Problem::BadRegion {
            field: fields[index].name.clone(),
        })
    } else if walk.unusual {
        let mut plain = Vec::with_capacity(end);
        Walk::new(&data[..end], Some(&mut plain)).top_level(fields)?;
        Ok(Some(plain))
    } else {
        Ok(None)
    };
    Ok(Record { end, verdict })
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
    /// The top-level field whose string is wanted (the region code), and where it lies.
    region: Option<usize>,
    region_text: Option<(usize, usize)>,
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
            region: None,
            region_text: None,
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
                self.unusual |= byte > 1;
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
            Shape::Float => {
                let bytes = self.bytes(4)?;
                let bits = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                let quiet = quietened(bits);
                self.unusual |= quiet != bits;
                self.write_raw(&quiet.to_le_bytes());
            }
            Shape::Double => self.copy(8)?,
            Shape::Bytes => {
                self.sized()?;
            }
            Shape::String => {
                let text = self.sized()?;
                std::str::from_utf8(text).map_err(|e| Stop(format!("string is not UTF-8: {e}")))?;
                if self.region == Some(self.field) {
                    self.region_text = Some((self.pos - text.len(), self.pos));
                }
            }
            Shape::Enum { symbols } => {
                self.index(symbols.len(), "enum symbol")?;
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

    /// An array, written as fastavro writes one: all items in one block.
    fn array(&mut self, items: &Shape) -> Result<(), Stop> {
        let start = self.out.as_deref().map(Vec::len);
        let mut total = 0_i64;
        let mut blocks = 0;
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
                blocks += 1;
                // Terminates: every item takes at least one byte (shape.rs), so
                // the count of items read stays below the length of the data.
                for _ in 0..count {
                    self.value(items)?;
                }
                total += count;
            }
        }
        self.unusual |= blocks > 1;
        if let (Some(out), Some(start)) = (self.out.as_deref_mut(), start) {
            if total > 0 {
                let mut count = Vec::with_capacity(10);
                push_long(&mut count, total);
                out.splice(start..start, count);
            }
            out.push(0);
        }
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
        let data = self.data;
        let mut bytes = data[start..].iter().copied();
        let Some((value, bits)) = read_varint(|| bytes.next()) else {
            self.pos = data.len();
            return Err(Stop("ends inside a varint".to_string()));
        };
        self.pos = data.len() - bytes.len();
        // Not plain: longer than needed, or ten bytes whose last one carries
        // bits past the 64th (the only way a varint of plain length differs).
        let read = self.pos - start;
        let last = u64::from(data[self.pos - 1]);
        self.unusual |= read != varint_len(bits) || last != bits >> (7 * (read - 1));
        Ok(value)
    }

    fn write_long(&mut self, value: i64) {
        if let Some(out) = self.out.as_deref_mut() {
            push_long(out, value);
        }
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(bytes);
        }
    }
}

/// Read a zig-zag varint byte by byte from `next` as fastavro's C reader does
/// (bits past 64 wrap away): the value and its raw bits, or `None` if the
/// bytes run out first.
pub fn read_varint(mut next: impl FnMut() -> Option<u8>) -> Option<(i64, u64)> {
    let mut bits = 0_u64;
    let mut shift = 0_u32;
    loop {
        let byte = next()?;
        bits |= u64::from(byte & 0x7f).wrapping_shl(shift);
        shift = shift.wrapping_add(7);
        if byte & 0x80 == 0 {
            return Some((
                ((bits >> 1) ^ (bits & 1).wrapping_neg()).cast_signed(),
                bits,
            ));
        }
    }
}

/// Append the shortest zig-zag varint of `value`.
pub fn push_long(out: &mut Vec<u8>, value: i64) {
    let mut bits = ((value << 1) ^ (value >> 63)).cast_unsigned();
    while bits >= 0x80 {
        out.push((bits as u8) | 0x80);
        bits >>= 7;
    }
    out.push(bits as u8);
}

/// A signalling NaN with its quiet bit set, as x86-64 converts it to a double;
/// any other float unchanged.
fn quietened(bits: u32) -> u32 {
    const EXPONENT: u32 = 0x7f80_0000;
    const QUIET: u32 = 0x0040_0000;
    let nan = bits & EXPONENT == EXPONENT && bits & 0x007f_ffff != 0;
    if nan { bits | QUIET } else { bits }
}

/// How many bytes the shortest varint of `bits` takes.
fn varint_len(bits: u64) -> usize {
    (64 - bits.leading_zeros() as usize).div_ceil(7).max(1)
}
