//! The lines of a JSON-lines input that hold any of a few markers: the registry pass
//! of `faceaudit check` takes its few thousand records out of a file of events
//! without parsing the rest (`consumers.lines.lines_holding` is the same in Python,
//! for inputs read as streams).

use std::io::{self, Read};

use memchr::memmem::Finder;
use memchr::{memchr, memrchr};

/// The lines holding a marker, in input order, each with its newline (the last line
/// may have none); a line holding several markers comes once. The input is read
/// `block` bytes at a time, and searched a block's whole lines at a time.
pub fn lines_holding(
    mut input: impl Read,
    markers: &[Vec<u8>],
    block: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let finders: Vec<Finder> = markers.iter().map(Finder::new).collect();
    let mut lines = Vec::new();
    let mut data: Vec<u8> = Vec::with_capacity(block * 2);
    loop {
        let kept = data.len();
        data.resize(kept + block, 0);
        let read = read_full(&mut input, &mut data[kept..])?;
        data.truncate(kept + read);
        let end = if read == 0 {
            data.len()
        } else {
            memrchr(b'\n', &data).map_or(0, |at| at + 1)
        };
        for (start, stop) in holding(&data[..end], &finders) {
            lines.push(data[start..stop].to_vec());
        }
        data.drain(..end);
        if read == 0 {
            return Ok(lines);
        }
    }
}

fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The `(start, stop)` of each line of `data` (whole lines) holding a marker, sorted.
fn holding(data: &[u8], finders: &[Finder]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for finder in finders {
        let mut from = 0;
        while let Some(at) = finder.find(&data[from..]).map(|at| from + at) {
            let start = memrchr(b'\n', &data[..at]).map_or(0, |i| i + 1);
            let stop = memchr(b'\n', &data[at..]).map_or(data.len(), |i| at + i + 1);
            found.push((start, stop));
            from = stop;
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8], markers: &[&[u8]]) -> Vec<Vec<u8>> {
        let markers: Vec<Vec<u8>> = markers.iter().map(|m| m.to_vec()).collect();
        lines_holding(data, &markers, 4).expect("a slice reads")
    }

    #[test]
    fn lines_come_in_order_once_with_their_newlines() {
        let data = b"a x\nb\nc y x\nd y";
        assert_eq!(
            scan(data, &[b"y", b"x"]),
            [&b"a x\n"[..], b"c y x\n", b"d y"]
        );
    }

    #[test]
    fn a_marker_across_blocks_is_found() {
        let found = scan(b"..\n.....MARK\nnext\n", &[b"MARK"]);
        assert_eq!(found, [&b".....MARK\n"[..]]);
    }
}
