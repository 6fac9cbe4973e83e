//! Row hashes and Merkle roots for the audit store's digests (`consumers.trail.row_hashes`).
//!
//! A row's hash is the SHA-256 of its values in column order, each written as
//! `00` for null, or `01` and the value: 8 bytes little-endian for an
//! `int64`, a `timestamp` (its integer) or a `float64` (its bits), one byte
//! for a `bool`, and for `binary`/`string` its length (8 bytes little-endian)
//! then its bytes; a `list<string>` is its length, then each item as a
//! string. The caller brings every column to one of these types first, so a
//! row hashes the same whether it comes from the validator's batch or back
//! from the store.
//!
//! The root is RFC 6962's Merkle tree hash over the leaves in the order given:
//! `SHA-256(00 || leaf)` for a leaf, `SHA-256(01 || left || right)` for a
//! node, the left subtree holding the largest power of two below the count.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, TimeUnit};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// One hash per row of `batch`; an error names a column of a type not listed above.
pub fn row_hashes(batch: &RecordBatch) -> Result<Vec<Hash>, String> {
    let columns: Vec<Column> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| Column::of(field.name(), array))
        .collect::<Result<_, _>>()?;
    let rows = batch.num_rows();
    let mut hashes = vec![[0u8; 32]; rows];
    // SHA-256 bounds this (about 600 bytes a fleet event): a large batch is hashed
    // in parts on the cores there are, while the caller waits without the GIL.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let part = if rows < ROWS_PER_THREAD * 2 { rows.max(1) } else { rows.div_ceil(threads) };
    let mut parts = hashes.chunks_mut(part);
    let own = parts.next();
    std::thread::scope(|scope| {
        for (number, out) in parts.enumerate() {
            let columns = &columns;
            scope.spawn(move || hash_rows(columns, (number + 1) * part, out));
        }
        if let Some(out) = own {
            hash_rows(&columns, 0, out);
        }
    });
    Ok(hashes)
}

/// Below this many rows a thread more costs more than it saves.
const ROWS_PER_THREAD: usize = 2048;
const MAX_THREADS: usize = 4;

fn hash_rows(columns: &[Column], first: usize, out: &mut [Hash]) {
    let mut buffer = Vec::with_capacity(1024);
    for (offset, hash) in out.iter_mut().enumerate() {
        buffer.clear();
        for column in columns {
            column.write(first + offset, &mut buffer);
        }
        *hash = Sha256::digest(&buffer).into();
    }
}

/// The Merkle tree hash of `leaves` (the hash of nothing for none); a large tree's two
/// subtrees are hashed at once.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.len() < ROWS_PER_THREAD * 2 {
        return tree_hash(leaves);
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    let (left, right) = std::thread::scope(|scope| {
        let left = scope.spawn(|| tree_hash(left));
        let right = tree_hash(right);
        (left.join().expect("the left subtree's thread"), right)
    });
    node_hash(&left, &right)
}

fn tree_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let split = split_point(n);
            node_hash(&tree_hash(&leaves[..split]), &tree_hash(&leaves[split..]))
        }
    }
}

fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn leaf_hash(leaf: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    hasher.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// A column downcast once to its concrete array, so each value is read directly.
enum Column<'a> {
    Int(&'a PrimitiveArray<Int64Type>),
    Time(&'a PrimitiveArray<TimestampMicrosecondType>),
    Float(&'a PrimitiveArray<Float64Type>),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
    Bytes(&'a BinaryArray),
    StringList(&'a ListArray, &'a StringArray),
}

impl<'a> Column<'a> {
    fn of(name: &str, array: &'a ArrayRef) -> Result<Self, String> {
        let array: &dyn Array = array.as_ref();
        Ok(match array.data_type() {
            DataType::Int64 => Column::Int(array.as_primitive::<Int64Type>()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Column::Time(array.as_primitive::<TimestampMicrosecondType>())
            }
            DataType::Float64 => Column::Float(array.as_primitive::<Float64Type>()),
            DataType::Boolean => Column::Bool(array.as_boolean()),
            DataType::Utf8 => Column::Str(array.as_string::<i32>()),
            DataType::Binary => Column::Bytes(array.as_binary::<i32>()),
            DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                let list = array.as_list::<i32>();
                Column::StringList(list, list.values().as_string::<i32>())
            }
            other => return Err(format!("column {name}: cannot hash values of type {other}")),
        })
    }

    fn write(&self, row: usize, out: &mut Vec<u8>) {
        let present = match self {
            Column::Int(a) => a.is_valid(row),
            Column::Time(a) => a.is_valid(row),
            Column::Float(a) => a.is_valid(row),
            Column::Bool(a) => a.is_valid(row),
            Column::Str(a) => a.is_valid(row),
            Column::Bytes(a) => a.is_valid(row),
            Column::StringList(a, _) => a.is_valid(row),
        };
        if !present {
            out.push(0);
            return;
        }
        out.push(1);
        match self {
            Column::Int(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Column::Time(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Column::Float(a) => out.extend_from_slice(&a.value(row).to_bits().to_le_bytes()),
            Column::Bool(a) => out.push(u8::from(a.value(row))),
            Column::Str(a) => write_bytes(out, a.value(row).as_bytes()),
            Column::Bytes(a) => write_bytes(out, a.value(row)),
            Column::StringList(list, items) => {
                // The items by the list's offsets: no array is made per row.
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                out.extend_from_slice(&((end - start) as u64).to_le_bytes());
                for item in start..end {
                    write_bytes(out, items.value(item).as_bytes());
                }
            }
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_of_two_leaves_is_their_node() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(merkle_root(&[a, b]), node_hash(&leaf_hash(&a), &leaf_hash(&b)));
    }

    #[test]
    fn three_leaves_split_two_and_one() {
        let leaves = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let left = node_hash(&leaf_hash(&leaves[0]), &leaf_hash(&leaves[1]));
        assert_eq!(merkle_root(&leaves), node_hash(&left, &leaf_hash(&leaves[2])));
    }
}
