//! The ingest socket's wire protocol (README "Ingest socket"): one JSON
//! object per request line in, one answer line out, in order. The service
//! writes answers with [`write`], the client reads them with [`parse_answer`];
//! both use [`Answer`], so the two sides cannot drift apart.
//!
//! - `{"id":N}`: stored and fsynced as record N;
//! - `{"id":null,"dropped":"…"}`: not recorded, by the event mask;
//! - `{"error":"…","retry":B}`: nothing of the line was stored; `retry` says
//!   whether sending it again later can succeed.

/// One answer of the ingest socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Id(u64),
    Dropped(String),
    /// Refused: nothing of the line was stored. `retry` says whether sending
    /// it again later can succeed.
    Error {
        message: String,
        retry: bool,
    },
}

pub fn parse_answer(line: &str) -> Answer {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return Answer::Error { message: format!("unreadable answer from the service: {line:?}"), retry: false };
    };
    if let Some(id) = v.get("id").and_then(serde_json::Value::as_u64) {
        Answer::Id(id)
    } else if let Some(d) = v.get("dropped").and_then(|d| d.as_str()) {
        Answer::Dropped(d.to_owned())
    } else {
        Answer::Error {
            message: v.get("error").and_then(|e| e.as_str()).unwrap_or("unknown answer").to_owned(),
            retry: v.get("retry").and_then(serde_json::Value::as_bool).unwrap_or(false),
        }
    }
}

/// Appends the answer's line (with its newline) to `line`. Written by hand:
/// the service writes one per record, and this is the hot path.
pub fn write(line: &mut Vec<u8>, answer: AnswerRef<'_>) {
    match answer {
        AnswerRef::Id(id) => {
            line.extend_from_slice(b"{\"id\":");
            line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            line.extend_from_slice(b"}\n");
        }
        AnswerRef::Dropped(why) => {
            line.extend_from_slice(b"{\"id\":null,\"dropped\":");
            line.extend_from_slice(serde_json::to_string(why).unwrap_or_default().as_bytes());
            line.extend_from_slice(b"}\n");
        }
        AnswerRef::Error { message, retry } => {
            line.extend_from_slice(b"{\"error\":");
            line.extend_from_slice(serde_json::to_string(message).unwrap_or_default().as_bytes());
            line.extend_from_slice(if retry { b",\"retry\":true}\n" } else { b",\"retry\":false}\n" });
        }
    }
}

/// An [`Answer`] borrowed, as the service has it.
#[derive(Debug, Clone, Copy)]
pub enum AnswerRef<'a> {
    Id(u64),
    Dropped(&'a str),
    Error { message: &'a str, retry: bool },
}

#[cfg(test)]
impl Answer {
    fn borrowed(&self) -> AnswerRef<'_> {
        match self {
            Answer::Id(id) => AnswerRef::Id(*id),
            Answer::Dropped(why) => AnswerRef::Dropped(why),
            Answer::Error { message, retry } => AnswerRef::Error { message, retry: *retry },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_the_service_writes_reads_back_the_same_and_as_json() {
        let texts = ["", "plain", "quote \" backslash \\ newline \n nul \0 \u{2028} Zürich", "{\"id\":7}"];
        let mut answers = vec![Answer::Id(1), Answer::Id(u64::MAX)];
        for t in texts {
            answers.push(Answer::Dropped(t.to_owned()));
            answers.push(Answer::Error { message: t.to_owned(), retry: true });
            answers.push(Answer::Error { message: t.to_owned(), retry: false });
        }
        for a in answers {
            let mut line = Vec::new();
            write(&mut line, a.borrowed());
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line: {line:?}");
            let text = std::str::from_utf8(&line).unwrap();
            serde_json::from_str::<serde_json::Value>(text).expect("valid JSON");
            assert_eq!(parse_answer(text.trim_end()), a);
        }
    }
}
