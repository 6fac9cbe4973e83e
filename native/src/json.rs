//! JSON lines in the contract's JSON form, turned into Arrow batches a chunk
//! at a time.
//!
//! The reference is the offline checker's per-line path: `orjson.loads`, then
//! `schemas.codec.from_json`. This path only ever says yes when the reference
//! would: it takes a line when it is certain the reference accepts it and
//! reads the same values, and otherwise hands the line back to the caller,
//! who judges it the reference's way (which also gives the reference's
//! message for a bad line). A line is taken when it
//!
//! * is valid UTF-8 and one JSON object, with only JSON whitespace around it;
//! * has a `"type"` naming one of the kinds this reader was built for, and
//!   otherwise only that kind's fields, each once, every field without a
//!   default present (a missing one with a default is null);
//! * has for every field a value of its type: a string; `true` or `false`; an
//!   integer literal within 32 or 64 bits for an int or a long (and not
//!   negative for a count); any finite number for a float; an enum symbol; a
//!   timestamp spelt as `iso.rs` reads it; `null` where the type allows it; an
//!   array of such values.
//!
//! String escapes are decoded as JSON defines them; a lone surrogate escape,
//! which orjson refuses, hands the line back. Each taken line is written as a
//! plain Avro body and read by arrow-avro, so its columns are those of every
//! other batch of its kind; `payload_sha256` is null (JSON has no payload).
//! Blank lines (ASCII whitespace only) are skipped, as the reference skips them.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use arrow_array::RecordBatch;
use memchr::{memchr, memchr_iter, memchr2, memrchr};

use crate::batch::Contract;
use crate::check::push_long;
use crate::iso;
use crate::rows::Rows;
use crate::shape::Shape;

/// A kind this reader takes lines of, with its fields by name.
struct Taken {
    kind: usize,
    fields: HashMap<String, usize>,
}

pub struct JsonLines {
    contract: Arc<Contract>,
    taken: Vec<Taken>,
}

/// One chunk of lines: a batch per kind taken, each line handed back as
/// `(line number, start, end)` byte offsets into the chunk (newline
/// included), and the number of lines in the chunk.
pub struct Parsed {
    pub batches: Vec<(String, RecordBatch)>,
    pub handed_back: Vec<(u32, usize, usize)>,
    pub lines: u32,
}

/// A JSON-lines input read a chunk of whole lines at a time.
pub struct JsonFile {
    lines: JsonLines,
    input: Box<dyn Read + Send + Sync>,
    chunk_bytes: usize,
    buffer: Vec<u8>,
    /// The end of the chunk last parsed, dropped before the next is read.
    chunk_end: usize,
    next_line: u32,
}

impl JsonFile {
    pub fn new(lines: JsonLines, input: Box<dyn Read + Send + Sync>, chunk_bytes: usize) -> Self {
        Self {
            lines,
            input,
            chunk_bytes: chunk_bytes.max(1),
            buffer: Vec::new(),
            chunk_end: 0,
            next_line: 1,
        }
    }

    /// Parse the next chunk of about `chunk_bytes` (whole lines; the last line
    /// may lack its newline); `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<Parsed>, String> {
        self.buffer.drain(..self.chunk_end);
        self.chunk_end = 0;
        let mut ended = false;
        while !ended
            && (self.buffer.len() < self.chunk_bytes || memrchr(b'\n', &self.buffer).is_none())
        {
            let want = self.chunk_bytes as u64;
            let got = Read::take(&mut self.input, want)
                .read_to_end(&mut self.buffer)
                .map_err(|e| e.to_string())?;
            ended = got == 0;
        }
        let cut = match memrchr(b'\n', &self.buffer) {
            Some(at) if !ended => at + 1,
            _ => self.buffer.len(),
        };
        if cut == 0 {
            return Ok(None);
        }
        let parsed = self.lines.parse(&self.buffer[..cut], self.next_line)?;
        self.next_line = self
            .next_line
            .checked_add(parsed.lines)
            .ok_or("more than 2**32 lines")?;
        self.chunk_end = cut;
        Ok(Some(parsed))
    }

    /// The bytes of the chunk last parsed (`Parsed::handed_back` points into them).
    pub fn chunk(&self) -> &[u8] {
        &self.buffer[..self.chunk_end]
    }
}

/// Buffers reused from line to line.
#[derive(Default)]
struct Scratch {
    entries: Vec<Entry>,
    slots: Vec<Option<(usize, usize)>>,
    integers: Vec<Option<i64>>,
    text: Vec<u8>,
    datum: Vec<u8>,
}

/// One member of the object: the key's string token, whether it has escapes,
/// and the value's text.
struct Entry {
    key: (usize, usize),
    escaped: bool,
    value: (usize, usize),
}

impl JsonLines {
    /// A reader of the `kinds` named (each must be one of the contract's).
    pub fn new(contract: Arc<Contract>, kinds: &[String]) -> Result<Self, String> {
        let taken = kinds
            .iter()
            .map(|name| {
                let kind = contract
                    .kinds
                    .iter()
                    .position(|k| k.name == *name)
                    .ok_or_else(|| format!("unknown kind {name}"))?;
                let fields = contract.kinds[kind]
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(index, field)| (field.name.clone(), index))
                    .collect();
                Ok(Taken { kind, fields })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { contract, taken })
    }

    /// Read the lines of `chunk`, the first being line number `first_line`.
    pub fn parse(&self, chunk: &[u8], first_line: u32) -> Result<Parsed, String> {
        let capacity = memchr_iter(b'\n', chunk).count() + 1;
        let mut rows: Vec<Option<Rows>> = self.taken.iter().map(|_| None).collect();
        let mut handed_back = Vec::new();
        let mut scratch = Scratch::default();
        let mut number = first_line;
        let mut start = 0;
        while start < chunk.len() {
            let end = memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |at| start + at + 1);
            let line = &chunk[start..end];
            if !is_blank(line) {
                match self.line(line, &mut scratch) {
                    Some(taken) => {
                        let kind = &self.contract.kinds[self.taken[taken].kind];
                        let rows = match &mut rows[taken] {
                            Some(rows) => rows,
                            empty => empty.insert(kind.rows(capacity)?),
                        };
                        rows.push(number, &scratch.datum, None)?;
                    }
                    None => handed_back.push((number, start, end)),
                }
            }
            number = number.checked_add(1).ok_or("more than 2**32 lines")?;
            start = end;
        }
        let mut batches = Vec::new();
        for (taken, rows) in self.taken.iter().zip(rows) {
            if let Some(batch) = rows.map(Rows::finish).transpose()?.flatten() {
                batches.push((self.contract.kinds[taken.kind].name.clone(), batch));
            }
        }
        Ok(Parsed {
            batches,
            handed_back,
            lines: number - first_line,
        })
    }

    /// The taken kind of `line` with its plain Avro body in `scratch.datum`,
    /// or `None` to hand the line back.
    fn line(&self, line: &[u8], scratch: &mut Scratch) -> Option<usize> {
        std::str::from_utf8(line).ok()?;
        members(line, &mut scratch.entries)?;
        let taken = self.kind_of(line, scratch)?;
        let kind = &self.contract.kinds[self.taken[taken].kind];
        let fields = &self.taken[taken].fields;
        scratch.slots.clear();
        scratch.slots.resize(kind.fields.len(), None);
        let mut next = 0; // the index a key in schema order would have
        for entry in &scratch.entries {
            let key = key(line, entry, &mut scratch.text)?;
            if key == b"type" {
                continue;
            }
            let index = match kind.fields.get(next) {
                Some(field) if field.name.as_bytes() == key => next,
                _ => *fields.get(std::str::from_utf8(key).ok()?)?,
            };
            next = index + 1;
            if scratch.slots[index].replace(entry.value).is_some() {
                return None; // a key given twice: orjson keeps the last, leave it to it
            }
        }
        scratch.datum.clear();
        scratch.integers.clear();
        for (field, slot) in kind.fields.iter().zip(&scratch.slots) {
            let integer = match slot {
                Some((from, to)) => encode(
                    &field.shape,
                    &line[*from..*to],
                    &mut scratch.datum,
                    &mut scratch.text,
                )?,
                None if field.has_default => {
                    let Shape::Union(branches) = &field.shape else {
                        return None;
                    };
                    let null = branches.iter().position(|b| matches!(b, Shape::Null))?;
                    push_long(&mut scratch.datum, null as i64);
                    None
                }
                None => return None,
            };
            scratch.integers.push(integer);
        }
        let constraints = &kind.constraints;
        let negative = constraints
            .non_negative
            .iter()
            .any(|&index| scratch.integers[index].is_some_and(|v| v < 0));
        if negative {
            return None;
        }
        if let Some(index) = constraints.region {
            let (from, to) = scratch.slots[index]?;
            if !constraints.region_fits(string(&line[from..to], &mut scratch.text)?) {
                return None; // the per-line reader names the field
            }
        }
        Some(taken)
    }

    /// The taken kind the line's one `"type"` member names.
    fn kind_of(&self, line: &[u8], scratch: &mut Scratch) -> Option<usize> {
        let mut found = None;
        for entry in &scratch.entries {
            if key(line, entry, &mut scratch.text)? == b"type" {
                if found.is_some() {
                    return None;
                }
                found = Some(entry.value);
            }
        }
        let (from, to) = found?;
        let name = string(&line[from..to], &mut scratch.text)?;
        self.taken
            .iter()
            .position(|t| self.contract.kinds[t.kind].name.as_bytes() == name)
    }
}

/// The decoded key of `entry`.
fn key<'t>(line: &'t [u8], entry: &Entry, scratch: &'t mut Vec<u8>) -> Option<&'t [u8]> {
    let token = &line[entry.key.0..entry.key.1];
    if entry.escaped {
        string(token, scratch)
    } else {
        Some(&token[1..token.len() - 1])
    }
}

/// Whether the line holds only what `bytes.strip()` removes.
fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

/// The members of the one JSON object `line` holds (`None` if it holds
/// anything else, or a value no contract field can take: an object, or an
/// array holding more than scalars).
fn members(line: &[u8], entries: &mut Vec<Entry>) -> Option<()> {
    entries.clear();
    let mut at = Cursor { text: line, pos: 0 };
    at.whitespace();
    at.eat(b'{')?;
    at.whitespace();
    if at.peek() == Some(b'}') {
        at.pos += 1;
    } else {
        loop {
            let (key, escaped) = at.string()?;
            at.whitespace();
            at.eat(b':')?;
            at.whitespace();
            let value = at.value(true)?;
            entries.push(Entry {
                key,
                escaped,
                value,
            });
            at.whitespace();
            match at.next()? {
                b',' => at.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    at.whitespace();
    (at.pos == line.len()).then_some(())
}

/// A position in a line's bytes.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's whitespace: space, tab, line feed, carriage return.
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The span of a string token, quotes included, and whether it has
    /// escapes; they are checked when it is decoded (`string`), raw control
    /// characters (which JSON does not allow in a string) here.
    fn string(&mut self) -> Option<((usize, usize), bool)> {
        let start = self.pos;
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            let rest = &self.text[self.pos..];
            let stop = memchr2(b'"', b'\\', rest)?;
            // A fold rather than any(): no early exit, so it vectorises.
            if rest[..stop].iter().fold(false, |raw, b| raw | (*b < 0x20)) {
                return None;
            }
            self.pos += stop + 1;
            if rest[stop] == b'"' {
                return Some(((start, self.pos), escaped));
            }
            escaped = true;
            self.next()?;
        }
    }

    /// The span of one value: a string, number, literal or (`arrays`) an array of those.
    fn value(&mut self, arrays: bool) -> Option<(usize, usize)> {
        let start = self.pos;
        match self.peek()? {
            b'"' => return self.string().map(|(span, _)| span),
            b'-' | b'0'..=b'9' => {
                while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
                    self.pos += 1;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'[' if arrays => {
                self.pos += 1;
                self.whitespace();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.value(false)?;
                        self.whitespace();
                        match self.next()? {
                            b',' => self.whitespace(),
                            b']' => break,
                            _ => return None,
                        }
                    }
                }
            }
            _ => return None,
        }
        Some((start, self.pos))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then(|| self.pos = end)
    }
}

/// Write the value `text` (one JSON value) as plain Avro of `shape`; its
/// integer value when it has one, `None` inside if not; `None` outside if
/// the value is not certainly one the reference accepts.
fn encode(
    shape: &Shape,
    text: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Option<Option<i64>> {
    match shape {
        Shape::Null => (text == b"null").then_some(None),
        Shape::Boolean => {
            let value = match text {
                b"true" => 1,
                b"false" => 0,
                _ => return None,
            };
            out.push(value);
            Some(None)
        }
        Shape::Int | Shape::Long => {
            let value = integer(text)?;
            if matches!(shape, Shape::Int) {
                i32::try_from(value).ok()?;
            }
            push_long(out, value);
            Some(Some(value))
        }
        Shape::Float => {
            out.extend_from_slice(&(number(text)? as f32).to_le_bytes());
            Some(None)
        }
        Shape::Double => {
            out.extend_from_slice(&number(text)?.to_le_bytes());
            Some(None)
        }
        Shape::String => {
            let value = string(text, scratch)?;
            push_long(out, value.len() as i64);
            out.extend_from_slice(value);
            Some(None)
        }
        Shape::Enum { symbols } => {
            let value = string(text, scratch)?;
            let index = symbols.iter().position(|s| s.as_bytes() == value)?;
            push_long(out, index as i64);
            Some(None)
        }
        Shape::Timestamp => {
            push_long(out, iso::micros(string(text, scratch)?)?);
            Some(None)
        }
        Shape::Union(branches) => {
            let wanted = |b: &Shape| matches!(b, Shape::Null) == (text == b"null");
            let mut matching = branches.iter().enumerate().filter(|(_, b)| wanted(b));
            let (index, branch) = matching.next()?;
            if matching.next().is_some() {
                return None; // which branch the reference picks is not settled here
            }
            push_long(out, index as i64);
            encode(branch, text, out, scratch)
        }
        Shape::Array(items) => {
            let mut at = Cursor { text, pos: 0 };
            at.eat(b'[')?;
            at.whitespace();
            let start = out.len();
            let mut count = 0_i64;
            if at.peek() != Some(b']') {
                loop {
                    let (from, to) = at.value(false)?;
                    encode(items, &text[from..to], out, scratch)?;
                    count += 1;
                    at.whitespace();
                    match at.next()? {
                        b',' => at.whitespace(),
                        b']' => break,
                        _ => return None,
                    }
                }
            }
            if count > 0 {
                let mut prefix = Vec::with_capacity(10);
                push_long(&mut prefix, count);
                out.splice(start..start, prefix);
            }
            out.push(0);
            Some(None)
        }
        Shape::Bytes | Shape::Record(_) => None,
    }
}

/// An integer literal (`-?(0|[1-9][0-9]*)`) that fits 64 bits.
fn integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let plain = match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !plain {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Any JSON number, as a finite double (orjson refuses one that overflows).
fn number(text: &[u8]) -> Option<f64> {
    if let Some(value) = integer(text) {
        return Some(value as f64);
    }
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let int_len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int_part, rest) = digits.split_at(int_len);
    if int_part.is_empty() || (int_part.len() > 1 && int_part[0] == b'0') {
        return None;
    }
    let rest = match rest {
        [b'.', tail @ ..] => {
            let frac = tail.iter().take_while(|b| b.is_ascii_digit()).count();
            if frac == 0 {
                return None;
            }
            &tail[frac..]
        }
        _ => rest,
    };
    let valid = match rest {
        [] => true,
        [b'e' | b'E', tail @ ..] => {
            let tail = tail
                .strip_prefix(b"+")
                .or_else(|| tail.strip_prefix(b"-"))
                .unwrap_or(tail);
            !tail.is_empty() && tail.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if !valid {
        return None;
    }
    let value: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// The contents of a string token (quotes included in `text`), escapes
/// decoded into `scratch` when it has any.
fn string<'t>(text: &'t [u8], scratch: &'t mut Vec<u8>) -> Option<&'t [u8]> {
    let inner = text.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr(b'\\', inner).is_none() {
        return Some(inner);
    }
    scratch.clear();
    let mut rest = inner;
    while let Some(at) = rest.iter().position(|b| *b == b'\\') {
        scratch.extend_from_slice(&rest[..at]);
        let (escape, tail) = rest[at + 1..].split_first()?;
        rest = tail;
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (unit, tail) = hex4(rest)?;
                rest = tail;
                let code = match unit {
                    0xd800..=0xdbff => {
                        let (low, tail) = hex4(rest.strip_prefix(b"\\u")?)?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return None;
                        }
                        rest = tail;
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return None,
                    unit => unit,
                };
                let mut utf8 = [0_u8; 4];
                scratch.extend_from_slice(char::from_u32(code)?.encode_utf8(&mut utf8).as_bytes());
                continue;
            }
            _ => return None,
        };
        scratch.push(byte);
    }
    scratch.extend_from_slice(rest);
    Some(scratch)
}

/// Four hexadecimal digits at the start of `text`, and what follows them.
fn hex4(text: &[u8]) -> Option<(u32, &[u8])> {
    let (digits, rest) = text.split_first_chunk::<4>()?;
    let value = std::str::from_utf8(digits).ok()?;
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u32::from_str_radix(value, 16).ok()?, rest))
}
