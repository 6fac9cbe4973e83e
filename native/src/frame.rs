//! Single-object framing (`C3 01`, 8-byte fingerprint, payload) and the
//! reasons a message is refused, as `schemas.codec` and
//! `consumers.decoding` name them.

use arrow_avro::schema::SINGLE_OBJECT_MAGIC;

pub const HEADER_SIZE: usize = SINGLE_OBJECT_MAGIC.len() + 8;

/// Every reason a message can be refused for: `schemas.codec.DECODE_REASONS`
/// plus the size limit the validator applies first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Oversized,
    Empty,
    BadMagic,
    TruncatedHeader,
    UnknownFingerprint,
    InvalidPayload,
    TrailingBytes,
    SchemaInvalid,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Empty => "empty",
            Self::BadMagic => "bad_magic",
            Self::TruncatedHeader => "truncated_header",
            Self::UnknownFingerprint => "unknown_fingerprint",
            Self::InvalidPayload => "invalid_payload",
            Self::TrailingBytes => "trailing_bytes",
            Self::SchemaInvalid => "schema_invalid",
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: String) -> Self {
        Self { reason, detail }
    }
}

/// The fingerprint bytes and the payload of a message, or why it has none.
/// The checks come in the reference's order: size, empty, magic, length.
pub fn split(message: Option<&[u8]>, max_bytes: usize) -> Result<([u8; 8], &[u8]), Failure> {
    let Some(message) = message else {
        return Err(Failure::new(Reason::Empty, "message is None".to_string()));
    };
    if message.len() > max_bytes {
        let detail = format!("{} bytes, more than the {max_bytes} allowed", message.len());
        return Err(Failure::new(Reason::Oversized, detail));
    }
    if message.is_empty() {
        return Err(Failure::new(Reason::Empty, "message is empty".to_string()));
    }
    let start = &message[..message.len().min(SINGLE_OBJECT_MAGIC.len())];
    // A lone C3 is a short header, not a wrong one.
    if !SINGLE_OBJECT_MAGIC.starts_with(start) {
        let mut detail = "message starts with ".to_string();
        push_hex(&mut detail, start);
        detail.push_str(", not c301 (Avro single-object)");
        return Err(Failure::new(Reason::BadMagic, detail));
    }
    let Some((header, payload)) = message.split_first_chunk::<HEADER_SIZE>() else {
        let detail = format!(
            "message has {} bytes, the header alone needs {HEADER_SIZE}",
            message.len()
        );
        return Err(Failure::new(Reason::TruncatedHeader, detail));
    };
    let mut fingerprint = [0_u8; 8];
    fingerprint.copy_from_slice(&header[SINGLE_OBJECT_MAGIC.len()..]);
    Ok((fingerprint, payload))
}

/// Append `bytes` to `text` in lower-case hexadecimal, two digits a byte.
pub fn push_hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}
