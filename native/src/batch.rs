//! One batch of messages: frame, check and group them by kind, then one
//! Arrow batch per kind present. No Python here, so it runs without the GIL.

use std::collections::HashMap;

use arrow_array::RecordBatch;

use crate::frame::{self, Failure, Reason, push_hex};
use crate::kind::{Good, Kind};

/// The kinds a decoder knows, found by the fingerprint in a message's header.
pub struct Contract {
    pub kinds: Vec<Kind>,
    by_fingerprint: HashMap<[u8; 8], usize>,
}

/// What one batch decodes to: `(kind, batch)` for each kind present, and
/// `(message index, failure)` for each message refused, in input order.
pub struct Decoded {
    pub batches: Vec<(String, RecordBatch)>,
    pub failures: Vec<(u32, Failure)>,
}

impl Contract {
    pub fn new(kinds: Vec<Kind>) -> Result<Self, String> {
        let mut by_fingerprint = HashMap::new();
        for (position, kind) in kinds.iter().enumerate() {
            if let Some(other) = by_fingerprint.insert(kind.fingerprint, position) {
                return Err(format!(
                    "{} and {} have the same schema",
                    kinds[other].name, kind.name
                ));
            }
        }
        Ok(Self {
            kinds,
            by_fingerprint,
        })
    }

    pub fn decode(&self, messages: &[Option<&[u8]>], max_bytes: usize) -> Result<Decoded, String> {
        let mut good: Vec<Vec<Good<'_>>> = self.kinds.iter().map(|_| Vec::new()).collect();
        let mut failures = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| "more than 2**32 messages".to_string())?;
            match self.classify(index, *message, max_bytes) {
                Ok((kind, message)) => good[kind].push(message),
                Err(failure) => failures.push((index, failure)),
            }
        }
        let batches = self
            .kinds
            .iter()
            .zip(&good)
            .filter(|(_, good)| !good.is_empty())
            .map(|(kind, good)| Ok((kind.name.clone(), kind.batch(good)?)))
            .collect::<Result<_, String>>()?;
        Ok(Decoded { batches, failures })
    }

    fn classify<'m>(
        &self,
        index: u32,
        message: Option<&'m [u8]>,
        max_bytes: usize,
    ) -> Result<(usize, Good<'m>), Failure> {
        let (fingerprint, payload) = frame::split(message, max_bytes)?;
        let Some(&kind) = self.by_fingerprint.get(&fingerprint) else {
            let mut detail = "schema fingerprint ".to_string();
            push_hex(&mut detail, &fingerprint);
            detail.push_str(" (bytes 2-9) is not a known kind");
            return Err(Failure::new(Reason::UnknownFingerprint, detail));
        };
        Ok((kind, self.kinds[kind].check(index, payload)?))
    }
}
