//! Assembly of token bytes into text: valid UTF-8 when a character spans
//! tokens, and stop strings found when they span tokens.

/// Result of adding one token's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text that may be sent now; empty while characters or a possible
    /// stop string are incomplete.
    Text(String),
    /// A stop string appeared: the text before it, which ends the output.
    Stop(String),
}

/// Collects token bytes and releases text that is complete UTF-8 and
/// cannot be the start of a stop string.
#[derive(Debug)]
pub struct TextAssembler {
    stop: Vec<String>,
    /// Bytes of a character whose remaining bytes have not arrived yet.
    partial: Vec<u8>,
    /// Decoded text held back because a stop string may start in it.
    held: String,
}

impl TextAssembler {
    /// Creates an assembler that ends the text at the first of `stop`.
    /// Empty stop strings are ignored.
    pub fn new(stop: Vec<String>) -> Self {
        TextAssembler {
            stop: stop.into_iter().filter(|text| !text.is_empty()).collect(),
            partial: Vec::new(),
            held: String::new(),
        }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Piece {
        self.partial.extend_from_slice(bytes);
        let decoded = decode_complete(&mut self.partial);
        self.held.push_str(&decoded);

        if let Some(position) = self.first_stop() {
            self.held.truncate(position);
            self.partial.clear();
            return Piece::Stop(std::mem::take(&mut self.held));
        }

        let keep = self.stop_prefix_len();
        let release = self.held.len() - keep;
        let rest = self.held.split_off(release);
        Piece::Text(std::mem::replace(&mut self.held, rest))
    }

    /// Returns the text still held at the end of the generation. Bytes of
    /// an unfinished character become U+FFFD, as in lossy UTF-8 decoding.
    pub fn finish(mut self) -> String {
        let tail = String::from_utf8_lossy(&self.partial).into_owned();
        self.held.push_str(&tail);
        self.held
    }

    /// Byte position of the earliest stop string in the held text.
    fn first_stop(&self) -> Option<usize> {
        self.stop
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min()
    }

    /// Length of the longest end of the held text that is the beginning
    /// of a stop string, which must stay held until more text arrives.
    fn stop_prefix_len(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stop {
            // A whole stop string was handled by first_stop, so only
            // proper prefixes remain.
            for len in (1..stop.len()).rev() {
                if len <= longest {
                    break;
                }
                if stop.is_char_boundary(len) && self.held.ends_with(&stop[..len]) {
                    longest = len;
                    break;
                }
            }
        }
        longest
    }
}

/// Decodes the complete characters at the start of `bytes` and removes
/// them, leaving an unfinished character's bytes. Invalid sequences
/// become U+FFFD.
fn decode_complete(bytes: &mut Vec<u8>) -> String {
    let mut text = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(valid) => {
                text.push_str(valid);
                start = bytes.len();
                break;
            }
            Err(err) => {
                let valid_end = start + err.valid_up_to();
                text.push_str(std::str::from_utf8(&bytes[start..valid_end]).unwrap_or_default());
                match err.error_len() {
                    // The bytes end inside a character that may still be
                    // completed by the next token.
                    None => {
                        start = valid_end;
                        break;
                    }
                    Some(invalid) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        start = valid_end + invalid;
                    }
                }
            }
        }
    }
    bytes.drain(..start);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assembler(stop: &[&str]) -> TextAssembler {
        TextAssembler::new(stop.iter().map(|text| (*text).to_owned()).collect())
    }

    fn text(piece: Piece) -> String {
        match piece {
            Piece::Text(text) => text,
            Piece::Stop(text) => panic!("unexpected stop before {text:?}"),
        }
    }

    #[test]
    fn plain_tokens_pass_through() {
        let mut assembler = assembler(&[]);
        assert_eq!(text(assembler.push(b"Hel")), "Hel");
        assert_eq!(text(assembler.push(b"lo")), "lo");
        assert_eq!(assembler.finish(), "");
    }

    #[test]
    fn character_split_across_tokens() {
        // U+1F600 is F0 9F 98 80.
        let mut assembler = assembler(&[]);
        assert_eq!(text(assembler.push(b"a\xf0\x9f")), "a");
        assert_eq!(text(assembler.push(b"\x98")), "");
        assert_eq!(text(assembler.push(b"\x80b")), "\u{1f600}b");
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut assembler = assembler(&[]);
        assert_eq!(text(assembler.push(b"a\xffb")), "a\u{fffd}b");
        // A lead byte followed by a byte that cannot continue it.
        assert_eq!(text(assembler.push(b"\xe2")), "");
        assert_eq!(text(assembler.push(b"x")), "\u{fffd}x");
    }

    #[test]
    fn unfinished_character_at_end_replaced() {
        let mut assembler = assembler(&[]);
        assert_eq!(text(assembler.push(b"ok\xe2\x82")), "ok");
        assert_eq!(assembler.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_inside_one_token() {
        let mut assembler = assembler(&["END"]);
        assert_eq!(assembler.push(b"abcENDdef"), Piece::Stop("abc".to_owned()));
    }

    #[test]
    fn stop_across_tokens() {
        let mut assembler = assembler(&["\n\nUser:"]);
        assert_eq!(text(assembler.push(b"Hi.\n")), "Hi.");
        assert_eq!(text(assembler.push(b"\nUs")), "");
        assert_eq!(assembler.push(b"er: next"), Piece::Stop(String::new()));
    }

    #[test]
    fn held_prefix_released_when_not_stop() {
        let mut assembler = assembler(&["STOP"]);
        assert_eq!(text(assembler.push(b"a ST")), "a ");
        assert_eq!(text(assembler.push(b"O")), "");
        assert_eq!(text(assembler.push(b"NG")), "STONG");
    }

    #[test]
    fn held_prefix_flushed_at_end() {
        let mut assembler = assembler(&["STOP"]);
        assert_eq!(text(assembler.push(b"a STO")), "a ");
        assert_eq!(assembler.finish(), "STO");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut assembler = assembler(&["cd", "b"]);
        assert_eq!(assembler.push(b"abcd"), Piece::Stop("a".to_owned()));
    }

    #[test]
    fn stop_with_multibyte_character_across_tokens() {
        // "é" is C3 A9; the token boundary falls inside it.
        let mut assembler = assembler(&["é!"]);
        assert_eq!(text(assembler.push(b"caf\xc3")), "caf");
        assert_eq!(text(assembler.push(b"\xa9")), "");
        assert_eq!(assembler.push(b"!"), Piece::Stop(String::new()));
    }

    #[test]
    fn empty_stop_ignored() {
        let mut assembler = assembler(&[""]);
        assert_eq!(text(assembler.push(b"abc")), "abc");
    }

    #[test]
    fn overlapping_stop_prefixes() {
        // "aab" must be found when the text is "aaab", and the first "a"
        // is the only text before it.
        let mut assembler = assembler(&["aab"]);
        assert_eq!(text(assembler.push(b"a")), "");
        assert_eq!(text(assembler.push(b"a")), "");
        assert_eq!(text(assembler.push(b"a")), "a");
        assert_eq!(assembler.push(b"b"), Piece::Stop(String::new()));
    }
}
