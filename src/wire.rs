//! The supernodes' multicast wire format: `<sender>;<code>;<payload>`, UTF-8, three fields.
//!
//! | code | payload     | meaning                         |
//! |------|-------------|---------------------------------|
//! | `20` | resource id | query: who has it?              |
//! | `21` | `host:port` | answer: a node there has it     |
//! | `22` | resource id | answer: not in my index         |
//! | `23` | `<limit>/<node>/<text>` | query: which names contain the text? |
//! | `24` | `<part>/<parts>/<id>,<location>,<name>/...` | answer: part of the matches |
//! | `25` | resource id | query: every holder you know? |
//! | `26` | `<id>/<location>/...` | answer: every holder here (none: just the id) |
//! | `27` | `<host:port>/<epoch>/<version>` | my index's summary is at this version |
//! | `28` | `bye`       | I am leaving the group          |
//!
//! The seed's supernodes split on `;` and need exactly three fields, so the tag that correlates
//! a query with its answers rides inside the sender field, split by `/`:
//! a query is sent as `<me>/<tag>`, and its answers come back as `<answerer>/<querier>/<tag>`.
//! A plain `<name>` sender is a legacy peer (or a query whose answers nobody needs to match).

use std::fmt;

use crate::id::{ResourceId, truncate, write_hex};

/// The largest datagram accepted; a query or an answer is far smaller.
pub const MAX_DATAGRAM: usize = 512;

/// Who sent a datagram, and which search it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A name alone: a legacy supernode, or an untagged message.
    Plain(String),
    /// A tagged query from supernode `from`.
    Query { from: String, tag: u64 },
    /// An answer from `from` to query `tag` of supernode `to`.
    Reply { from: String, to: String, tag: u64 },
}

impl Sender {
    /// The supernode that sent the datagram.
    pub fn from(&self) -> &str {
        match self {
            Sender::Plain(from) | Sender::Query { from, .. } | Sender::Reply { from, .. } => from,
        }
    }

    /// The sender field, and the seal at its end when it has one (`.../<stamp>/<mac>` after a
    /// tagged query's or answer's sender).
    fn parse_sealed(field: &str) -> (Sender, Option<Seal>) {
        if let Some((rest, mac)) = field.rsplit_once('/')
            && let Some((unsealed, stamp)) = rest.rsplit_once('/')
            && let (Some(stamp), Some(mac)) = (parse_stamp(stamp), parse_mac(mac))
        {
            let sender = Sender::parse(unsealed);
            if !matches!(sender, Sender::Plain(_)) {
                return (sender, Some(Seal { stamp, mac }));
            }
        }
        (Sender::parse(field), None)
    }

    fn parse(field: &str) -> Sender {
        let mut split = field.split('/');
        let parts = [split.next(), split.next(), split.next(), split.next()];
        let tag = |text: &str| u64::from_str_radix(text, 16).ok();
        match parts {
            [Some(from), Some(t), None, _] if !from.is_empty() => match tag(t) {
                Some(tag) => Sender::Query {
                    from: from.into(),
                    tag,
                },
                None => Sender::Plain(field.into()),
            },
            [Some(from), Some(to), Some(t), None] if !from.is_empty() && !to.is_empty() => {
                match tag(t) {
                    Some(tag) => Sender::Reply {
                        from: from.into(),
                        to: to.into(),
                        tag,
                    },
                    None => Sender::Plain(field.into()),
                }
            }
            _ => Sender::Plain(field.into()),
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sender::Plain(from) => f.write_str(from),
            Sender::Query { from, tag } => write!(f, "{from}/{tag:x}"),
            Sender::Reply { from, to, tag } => write!(f, "{from}/{to}/{tag:x}"),
        }
    }
}

/// What a datagram says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `20`: who has this resource?
    Query(ResourceId),
    /// `21`: a node at this `host:port` has it.
    Found(String),
    /// `22`: not in my index. The id is kept as text: a legacy peer may echo anything.
    NotFound(String),
    /// `23`: which resources have a name containing `text` (of the node named `node`, when
    /// given)? At most `limit` from each answerer. The seed's supernodes ignore the code.
    NameQuery {
        text: String,
        node: Option<String>,
        limit: u32,
    },
    /// `25`: every holder of this resource you know? (The seed's supernodes ignore it.)
    AllQuery(ResourceId),
    /// `26`: the answer to a `25`: every location here that holds `id` (maybe none).
    AllFound {
        id: ResourceId,
        locations: Vec<String>,
    },
    /// `24`: part `part` (from 1) of `parts` of an answer to a `23`; a peer with no match
    /// sends one empty part.
    NameAnswer {
        part: u16,
        parts: u16,
        hits: Vec<NameHit>,
    },
    /// `27`: my index's summary is at `version` of `epoch`; fetch it from my API at `http`
    /// (`host:port`) when yours is older ([`crate::digest`]). The seed's supernodes ignore it.
    Digest {
        http: String,
        epoch: u64,
        version: u64,
    },
    /// `28`: I am stopping: forget me (and my summary) now, not when I am no longer heard.
    Leaving,
}

/// One match of a name query: who holds which id under which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameHit {
    pub id: ResourceId,
    pub location: String,
    pub name: String,
}

/// Writes `text` with the bytes that separate fields and entries (`;` `/` `,` `%`) and the
/// control characters as `%XX`; everything else (any UTF-8) as it is.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            ';' | '/' | ',' | '%' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            _ => out.push(c),
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let [byte] = crate::id::decode_hex::<1>(bytes.get(i + 1..i + 3)?)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One `24` entry as written: `<id>,<location>,<escaped name>`.
pub fn hit_text(hit: &NameHit) -> String {
    let mut out = format!("{},{},", hit.id, hit.location);
    escape_into(&mut out, &hit.name);
    out
}

/// A datagram's signature under the cluster key, at the end of its sender field: when it was
/// sent (microseconds since the epoch, rising with every datagram of its sender) and the first
/// 16 bytes of its HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub stamp: u64,
    pub mac: [u8; 16],
}

fn parse_stamp(text: &str) -> Option<u64> {
    (!text.is_empty() && text.len() <= 16)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

fn parse_mac(text: &str) -> Option<[u8; 16]> {
    crate::id::decode_hex(text.as_bytes())
}

/// A sealed datagram without its MAC, in two pieces: the text before `/<mac>` (the sender
/// field's last part) and the text from the first `;` on. This, not a text written again from
/// what was parsed, is what the MAC covers: every byte as sent.
pub fn unsealed(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = datagram.len()
        - datagram
            .iter()
            .rev()
            .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0'))
            .count();
    let semi = datagram.iter().position(|&b| b == b';')?;
    let slash = datagram[..semi].iter().rposition(|&b| b == b'/')?;
    (semi - slash == 33).then(|| (&datagram[..slash], &datagram[semi..end]))
}

/// Writes `mac` into the room a sealed datagram keeps for it (see [`unsealed`]).
pub fn put_mac(datagram: &mut [u8], mac: &[u8; 16]) {
    if let Some(semi) = datagram.iter().position(|&b| b == b';')
        && semi >= 32
    {
        write_hex(mac, &mut datagram[semi - 32..semi]);
    }
}

/// One datagram of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub sender: Sender,
    pub body: Body,
    /// Present in a keyed group.
    pub seal: Option<Seal>,
}

impl Message {
    pub fn new(sender: Sender, body: Body) -> Message {
        Message {
            sender,
            body,
            seal: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let seal = self.seal.as_ref();
        self.text(seal.map(|s| s.stamp), seal.map(|s| &s.mac))
            .into_bytes()
    }

    /// The datagram's text, built in one buffer (a search writes and reads several).
    fn text(&self, stamp: Option<u64>, mac: Option<&[u8; 16]>) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(192);
        let _ = write!(out, "{}", self.sender);
        if let Some(stamp) = stamp {
            let _ = write!(out, "/{stamp:x}");
        }
        if let Some(mac) = mac {
            let mut digits = [0u8; 32];
            write_hex(mac, &mut digits);
            out.push('/');
            out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
        }
        let _ = match &self.body {
            Body::Query(id) => write!(out, ";20;{id}"),
            Body::Found(location) => write!(out, ";21;{location}"),
            Body::NotFound(id) => write!(out, ";22;{id}"),
            Body::AllQuery(id) => write!(out, ";25;{id}"),
            Body::AllFound { id, locations } => {
                let _ = write!(out, ";26;{id}");
                for location in locations {
                    out.push('/');
                    out.push_str(location);
                }
                Ok(())
            }
            Body::NameQuery { text, node, limit } => {
                let _ = write!(out, ";23;{limit}/");
                escape_into(&mut out, node.as_deref().unwrap_or_default());
                out.push('/');
                escape_into(&mut out, text);
                Ok(())
            }
            Body::Digest {
                http,
                epoch,
                version,
            } => write!(out, ";27;{http}/{epoch:x}/{version}"),
            Body::Leaving => write!(out, ";28;bye"),
            Body::NameAnswer { part, parts, hits } => {
                let _ = write!(out, ";24;{part}/{parts}");
                for hit in hits {
                    out.push('/');
                    out.push_str(&hit_text(hit));
                }
                Ok(())
            }
        };
        out
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seal = self.seal.as_ref();
        f.write_str(&self.text(seal.map(|s| s.stamp), seal.map(|s| &s.mac)))
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    TooLong(usize),
    NotUtf8,
    FieldCount(usize),
    EmptySender,
    UnknownCode(String),
    BadPayload(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooLong(n) => write!(f, "{n} bytes, over {MAX_DATAGRAM}"),
            WireError::NotUtf8 => f.write_str("not UTF-8"),
            WireError::FieldCount(n) => write!(f, "{n} fields instead of 3"),
            WireError::EmptySender => f.write_str("empty sender"),
            WireError::UnknownCode(code) => write!(f, "unknown code {code:?}"),
            WireError::BadPayload(why) => write!(f, "bad payload: {why}"),
        }
    }
}

/// Parses one datagram; any datagram that is not exactly a protocol message is an error.
pub fn parse(datagram: &[u8]) -> Result<Message, WireError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(WireError::TooLong(datagram.len()));
    }
    let text = std::str::from_utf8(datagram).map_err(|_| WireError::NotUtf8)?;
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    // Split without collecting: a datagram costs no allocation to be taken apart.
    let mut fields = text.split(';');
    let (Some(sender), Some(code), Some(payload), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(WireError::FieldCount(text.split(';').count()));
    };
    if sender.is_empty() {
        return Err(WireError::EmptySender);
    }
    let body = match code {
        "20" => Body::Query(ResourceId::parse(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed id {:?}", truncate(payload, 80)))
        })?),
        "21" => {
            check_location(payload).map_err(WireError::BadPayload)?;
            Body::Found(payload.to_string())
        }
        "22" => Body::NotFound(payload.to_ascii_lowercase()),
        "25" => Body::AllQuery(ResourceId::parse(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed id {:?}", truncate(payload, 80)))
        })?),
        "26" => parse_all_found(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed holders {:?}", truncate(payload, 80)))
        })?,
        "23" => parse_name_query(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed name query {:?}", truncate(payload, 80)))
        })?,
        "24" => parse_name_answer(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed name answer {:?}", truncate(payload, 80)))
        })?,
        "27" => parse_digest(payload).ok_or_else(|| {
            WireError::BadPayload(format!("malformed digest {:?}", truncate(payload, 80)))
        })?,
        "28" if payload == "bye" => Body::Leaving,
        "28" => {
            return Err(WireError::BadPayload(format!(
                "malformed leave {:?}",
                truncate(payload, 80)
            )));
        }
        other => return Err(WireError::UnknownCode(truncate(other, 16).to_string())),
    };
    let (sender, seal) = Sender::parse_sealed(sender);
    Ok(Message { sender, body, seal })
}

fn parse_all_found(payload: &str) -> Option<Body> {
    let mut fields = payload.split('/');
    let id = ResourceId::parse(fields.next()?)?;
    let locations = fields
        .map(|location| check_location(location).ok().map(|()| location.to_string()))
        .collect::<Option<Vec<_>>>()?;
    Some(Body::AllFound { id, locations })
}

fn parse_digest(payload: &str) -> Option<Body> {
    let mut fields = payload.split('/');
    let http = fields.next()?;
    check_location(http).ok()?;
    let epoch = u64::from_str_radix(fields.next()?, 16).ok()?;
    let version = fields.next()?.parse().ok()?;
    fields.next().is_none().then(|| Body::Digest {
        http: http.to_string(),
        epoch,
        version,
    })
}

fn parse_name_query(payload: &str) -> Option<Body> {
    let mut fields = payload.splitn(3, '/');
    let limit = fields.next()?.parse().ok()?;
    let node = unescape(fields.next()?)?;
    let text = unescape(fields.next()?)?;
    (!text.is_empty()).then_some(Body::NameQuery {
        text,
        node: (!node.is_empty()).then_some(node),
        limit,
    })
}

fn parse_name_answer(payload: &str) -> Option<Body> {
    let mut fields = payload.split('/');
    let part: u16 = fields.next()?.parse().ok()?;
    let parts: u16 = fields.next()?.parse().ok()?;
    if part == 0 || part > parts {
        return None;
    }
    let hits = fields
        .map(|entry| {
            let mut items = entry.splitn(3, ',');
            let id = ResourceId::parse(items.next()?)?;
            let location = items.next()?;
            check_location(location).ok()?;
            let name = unescape(items.next()?)?;
            Some(NameHit {
                id,
                location: location.to_string(),
                name,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Body::NameAnswer { part, parts, hits })
}

/// Checks a `host:port` location: a host of letters, digits, `.`, `-`, `_` (or an IPv6
/// address in brackets), and a port from 1 to 65535. Nothing that could break the wire format
/// (`;`) or a URL (`/`, spaces) gets through. For datagrams, where the seed's supernodes may
/// name a holder by its host name; a location in a request is read by [`crate::location::parse`].
pub fn check_location(location: &str) -> Result<(), String> {
    let bad = || format!("location {:?} is not host:port", truncate(location, 80));
    let (host, port) = location.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let port_ok =
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "a165db4b039ff22779f88e8e847a938fcbab8229769c5ce81111c88cfc8cbb85";

    fn id() -> ResourceId {
        ResourceId::parse(ID).unwrap()
    }

    #[test]
    fn seed_messages_parse() {
        let query = parse(format!("a76d292-7aee;20;{ID}").as_bytes()).unwrap();
        assert_eq!(query.sender, Sender::Plain("a76d292-7aee".into()));
        assert_eq!(query.body, Body::Query(id()));

        let found = parse(b"7f9a678b-deed;21;192.168.35.12:8001").unwrap();
        assert_eq!(found.body, Body::Found("192.168.35.12:8001".into()));

        let missing = parse(format!("7f9a678b;22;{}", ID.to_uppercase()).as_bytes()).unwrap();
        assert_eq!(missing.body, Body::NotFound(ID.into()));
    }

    #[test]
    fn tagged_messages_round_trip_in_three_fields() {
        let query = Message::new(
            Sender::Query {
                from: "me".into(),
                tag: 0x1f,
            },
            Body::Query(id()),
        );
        let reply = |tag, body| {
            let sender = Sender::Reply {
                from: "peer".into(),
                to: "me".into(),
                tag,
            };
            Message::new(sender, body)
        };
        let mut sealed = reply(7, Body::Found("127.0.0.1:8000".into()));
        sealed.seal = Some(Seal {
            stamp: 0x1234,
            mac: [0xab; 16],
        });
        let leaving = Message::new(
            Sender::Query {
                from: "me".into(),
                tag: 0,
            },
            Body::Leaving,
        );
        let messages = [
            query.clone(),
            leaving,
            reply(7, Body::Found("127.0.0.1:8000".into())),
            reply(u64::MAX, Body::NotFound(ID.into())),
            sealed.clone(),
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(bytes.iter().filter(|&&b| b == b';').count(), 2);
            assert_eq!(parse(&bytes).unwrap(), message);
        }
        assert_eq!(query.to_string(), format!("me/1f;20;{ID}"));
        assert_eq!(
            sealed.to_string(),
            format!("peer/me/7/1234/{};21;127.0.0.1:8000", "ab".repeat(16))
        );
        let bytes = sealed.encode();
        let (before, after) = unsealed(&bytes).unwrap();
        assert_eq!(
            (before, after),
            (&b"peer/me/7/1234"[..], &b";21;127.0.0.1:8000"[..])
        );
        // A plain name with slashes is not a seal.
        let plain = parse(format!("a/b/c/d;20;{ID}").as_bytes()).unwrap();
        assert_eq!(
            (plain.sender, plain.seal),
            (Sender::Plain("a/b/c/d".into()), None)
        );
    }

    #[test]
    fn name_queries_and_answers_round_trip_whatever_the_names_hold() {
        let reply = Sender::Reply {
            from: "peer".into(),
            to: "me".into(),
            tag: 9,
        };
        let messages = [
            Message::new(
                Sender::Query {
                    from: "me".into(),
                    tag: 9,
                },
                Body::NameQuery {
                    text: "a;b/c,d%e\u{1}é".into(),
                    node: Some("node/1".into()),
                    limit: 100,
                },
            ),
            Message::new(
                reply.clone(),
                Body::NameAnswer {
                    part: 2,
                    parts: 3,
                    hits: vec![
                        NameHit {
                            id: id(),
                            location: "127.0.0.1:8000".into(),
                            name: "x;y/z, 100% ü.txt".into(),
                        },
                        NameHit {
                            id: id(),
                            location: "[::1]:9".into(),
                            name: String::new(),
                        },
                    ],
                },
            ),
            Message::new(
                reply,
                Body::NameAnswer {
                    part: 1,
                    parts: 1,
                    hits: vec![],
                },
            ),
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(bytes.iter().filter(|&&b| b == b';').count(), 2, "{message}");
            assert_eq!(parse(&bytes).unwrap(), message);
        }
        for bad in [
            "x/1;23;",
            "x/1;23;10//",
            "x/1;23;z/a/b",
            "x/1/2;24;0/1",
            "x/1/2;24;2/1",
            "x/1/2;24;1/1/nothex,h:1,n",
            "x/1/2;24;1/1/{ID},not a location,n",
            "x/1;23;1/%zz/t",
        ] {
            let bad = bad.replace("{ID}", ID);
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        let long = vec![b'a'; 5000];
        let cases: Vec<&[u8]> = vec![
            b"",
            b";",
            b";;",
            b"a;20",
            b"a;20;b;c",
            b"a;99;x",
            b";20;0000",
            b"a;20;not-an-id",
            b"a;21;no-port",
            b"a;21;host:0",
            b"a;21;host:99999",
            b"a;21;ho st:80",
            &[0xff, 0xfe, b';', b'2', b'0', b';', 0x80],
            &long,
        ];
        for case in cases {
            assert!(
                parse(case).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn odd_senders_stay_plain() {
        for field in ["a/b/c/d", "a/zz", "/1", "a//1"] {
            let message = parse(format!("{field};22;{ID}").as_bytes()).unwrap();
            assert_eq!(message.sender, Sender::Plain(field.into()), "{field}");
        }
    }

    #[test]
    fn locations() {
        for good in ["127.0.0.1:8000", "host-3.lan:80", "[::1]:5000", "a_b:1"] {
            assert!(check_location(good).is_ok(), "{good}");
        }
        for bad in [
            "", ":80", "host", "host:", "a;b:80", "a/b:80", "[]:80", "h:0", "h:+80",
        ] {
            assert!(check_location(bad).is_err(), "{bad}");
        }
    }
}
