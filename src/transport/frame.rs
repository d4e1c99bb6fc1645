//! The inter-broker wire format, pure (no IO): frames, the handshake, envelopes.
//!
//! ```text
//! frame    = length:u32 BE (bytes after it, checked against the cap before buffering)
//!            version:u8 (PROTOCOL_VERSION) kind:u8 body
//! kind 0   Hello    dialer -> acceptor, first frame on every connection: MAGIC, postcard(Hello)
//! kind 1   Welcome  acceptor -> dialer, the handshake accepted: MAGIC, postcard(Hello)
//! kind 2   Refused  acceptor -> dialer, then close: postcard(String), the reason
//! kind 3   Envelope dialer -> acceptor, after Welcome: postcard(Envelope)
//! ```
//! A body must be decoded exactly: trailing bytes are malformed.

use serde::{Deserialize, Serialize};

use crate::raft::{Msg, NodeId};

/// First bytes of a handshake body, so a stray client (a Kafka client on the wrong port) is
/// told apart from a peer of another version.
pub const MAGIC: [u8; 4] = *b"STRB";
/// The one frame version this build speaks. A frame of another version closes the connection.
pub const PROTOCOL_VERSION: u8 = 2;
/// The version byte and the kind byte.
pub const FRAME_HEADER_BYTES: usize = 2;
/// Longest refusal reason sent back (longer ones are cut).
pub const REFUSED_REASON_BYTES_MAX: usize = 256;

const KIND_HELLO: u8 = 0;
const KIND_WELCOME: u8 = 1;
const KIND_REFUSED: u8 = 2;
const KIND_ENVELOPE: u8 = 3;

/// Which Raft group a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GroupId {
    /// The metadata quorum (KRaft's `__cluster_metadata`).
    Metadata,
    /// One partition's replicas.
    Partition { topic_id: [u8; 16], partition: i32 },
}

/// One message of one group, from one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub group: GroupId,
    pub from: NodeId,
    pub msg: Message,
}

/// What an envelope carries: a Raft message, or a message of the group's shell (the metadata
/// quorum's forwarded proposals), opaque to the transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Raft(Msg),
    Control(bytes::Bytes),
}

impl Message {
    pub fn raft(&self) -> Option<&Msg> {
        match self {
            Message::Raft(m) => Some(m),
            Message::Control(_) => None,
        }
    }
}

impl From<Msg> for Message {
    fn from(m: Msg) -> Message {
        Message::Raft(m)
    }
}

/// The handshake, both ways: who is speaking (`from`), to whom it thinks it speaks (`to`), in
/// which cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u8,
    pub cluster_id: String,
    pub from: NodeId,
    pub to: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Welcome(Hello),
    Refused(String),
    Envelope(Envelope),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {0} is shorter than the frame header")]
    TooShort(usize),
    #[error("unknown frame version {0} (this node speaks {PROTOCOL_VERSION})")]
    UnknownVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("handshake without the strand magic")]
    BadMagic,
    #[error("malformed {kind} frame: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

/// Checks a frame's declared length (the 4 bytes before it) before anything is buffered.
pub fn check_len(len: u32, max: usize) -> Result<usize, FrameError> {
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len < FRAME_HEADER_BYTES {
        return Err(FrameError::TooShort(len));
    }
    Ok(len)
}

/// Appends `frame` (length prefix included) to `out`. If the frame would exceed `max` bytes
/// after its length, `out` is left as it was and `TooLarge` returned.
pub fn encode(frame: &Frame, max: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(PROTOCOL_VERSION);
    let result = match frame {
        Frame::Hello(h) => encode_hello(KIND_HELLO, h, out),
        Frame::Welcome(h) => encode_hello(KIND_WELCOME, h, out),
        Frame::Refused(reason) => {
            out.push(KIND_REFUSED);
            let mut cut = reason.len().min(REFUSED_REASON_BYTES_MAX);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            postcard::to_extend(&reason[..cut], std::mem::take(out)).map(|v| *out = v)
        }
        Frame::Envelope(e) => {
            out.push(KIND_ENVELOPE);
            postcard::to_extend(e, std::mem::take(out)).map(|v| *out = v)
        }
    };
    if let Err(e) = result {
        // Serializing into a Vec fails only on an allocation failure or a serde bug.
        out.truncate(start);
        return Err(FrameError::Malformed { kind: "outgoing", reason: e.to_string() });
    }
    let len = out.len() - start - 4;
    if len > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn encode_hello(kind: u8, h: &Hello, out: &mut Vec<u8>) -> postcard::Result<()> {
    out.push(kind);
    out.extend_from_slice(&MAGIC);
    postcard::to_extend(h, std::mem::take(out)).map(|v| *out = v)
}

/// Decodes a frame's bytes after its length: version, kind, body.
pub fn decode_body(bytes: &[u8]) -> Result<Frame, FrameError> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::TooShort(bytes.len()));
    }
    if bytes[0] != PROTOCOL_VERSION {
        return Err(FrameError::UnknownVersion(bytes[0]));
    }
    let body = &bytes[FRAME_HEADER_BYTES..];
    match bytes[1] {
        KIND_HELLO => decode_hello(body).map(Frame::Hello),
        KIND_WELCOME => decode_hello(body).map(Frame::Welcome),
        KIND_REFUSED => exact::<String>("refused", body).map(Frame::Refused),
        KIND_ENVELOPE => exact::<Envelope>("envelope", body).map(Frame::Envelope),
        kind => Err(FrameError::UnknownKind(kind)),
    }
}

fn decode_hello(body: &[u8]) -> Result<Hello, FrameError> {
    if body.len() < MAGIC.len() || body[..MAGIC.len()] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    exact::<Hello>("handshake", &body[MAGIC.len()..])
}

fn exact<'a, T: Deserialize<'a>>(kind: &'static str, body: &'a [u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Malformed { kind, reason: format!("{} trailing bytes", rest.len()) }),
        Err(e) => Err(FrameError::Malformed { kind, reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, LogIndex, Payload, Term};

    fn envelope() -> Envelope {
        Envelope {
            group: GroupId::Partition { topic_id: [7; 16], partition: 3 },
            from: NodeId(2),
            msg: Msg::Append {
                term: Term(5),
                prev_index: LogIndex(9),
                prev_term: Term(4),
                commit: LogIndex(8),
                entries: vec![Entry { term: Term(5), payload: Payload::Data(bytes::Bytes::from_static(b"abc")) }],
            }
            .into(),
        }
    }

    fn roundtrip(frame: Frame) {
        let mut out = vec![9, 9]; // appends after what is there
        encode(&frame, 1 << 20, &mut out).unwrap();
        assert_eq!(&out[..2], &[9, 9]);
        let len = u32::from_be_bytes(out[2..6].try_into().unwrap());
        assert_eq!(check_len(len, 1 << 20).unwrap(), out.len() - 6);
        assert_eq!(decode_body(&out[6..]).unwrap(), frame);
    }

    #[test]
    fn every_kind_roundtrips() {
        let hello = Hello { protocol_version: PROTOCOL_VERSION, cluster_id: "c1".into(), from: NodeId(1), to: NodeId(2) };
        roundtrip(Frame::Hello(hello.clone()));
        roundtrip(Frame::Welcome(hello));
        roundtrip(Frame::Refused("another cluster".into()));
        roundtrip(Frame::Envelope(envelope()));
        roundtrip(Frame::Envelope(Envelope { group: GroupId::Metadata, from: NodeId(1), msg: Msg::TimeoutNow { term: Term(1) }.into() }));
        roundtrip(Frame::Envelope(Envelope { group: GroupId::Metadata, from: NodeId(1), msg: Message::Control(bytes::Bytes::from_static(b"fwd")) }));
    }

    #[test]
    fn length_is_checked_before_buffering() {
        assert_eq!(check_len(u32::MAX, 1024), Err(FrameError::TooLarge { len: u32::MAX as usize, max: 1024 }));
        assert_eq!(check_len(1, 1024), Err(FrameError::TooShort(1)));
        assert_eq!(check_len(1024, 1024), Ok(1024));
    }

    #[test]
    fn an_outgoing_frame_over_the_cap_leaves_the_buffer_alone() {
        let mut out = vec![1];
        let e = encode(&Frame::Envelope(envelope()), 8, &mut out).unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { max: 8, .. }));
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let mut good = Vec::new();
        encode(&Frame::Envelope(envelope()), 1 << 20, &mut good).unwrap();
        let body = &good[4..];
        assert_eq!(decode_body(&[PROTOCOL_VERSION + 1, 3]), Err(FrameError::UnknownVersion(PROTOCOL_VERSION + 1)));
        assert_eq!(decode_body(&[PROTOCOL_VERSION, 99]), Err(FrameError::UnknownKind(99)));
        assert_eq!(decode_body(&[PROTOCOL_VERSION, KIND_HELLO, b'X', b'X', b'X', b'X']), Err(FrameError::BadMagic));
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert!(matches!(decode_body(&trailing), Err(FrameError::Malformed { kind: "envelope", .. })));
        // Every truncation of a good frame is an error.
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut]).is_err(), "cut at {cut}");
        }
        // Every single-byte corruption decodes to something or fails, without a panic.
        for i in 0..body.len() {
            let mut b = body.to_vec();
            b[i] ^= 0xff;
            let _ = decode_body(&b);
        }
    }

    #[test]
    fn a_long_refusal_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(REFUSED_REASON_BYTES_MAX);
        let mut out = Vec::new();
        encode(&Frame::Refused(reason), 1 << 20, &mut out).unwrap();
        match decode_body(&out[4..]).unwrap() {
            Frame::Refused(r) => assert!(r.len() <= REFUSED_REASON_BYTES_MAX && !r.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
