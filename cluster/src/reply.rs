//! Stream replies as read from the server, where anything may be. The `redis` crate's
//! own reading of a stream reply fails whole when one field's name is not UTF-8, which
//! would make a single garbage entry the end of every agent that reads it (and of the
//! task entries read with it). Here a field's name is read lossily instead: such an
//! entry keeps its other fields and ends as a malformed entry, as any garbage does.

use std::collections::HashMap;

use redis::streams::{StreamId, StreamKey, StreamReadReply};
use redis::{ErrorKind, RedisError, RedisResult, Value};

/// An `XREAD` or `XREADGROUP` reply: `None` when nothing came (the reply is nil).
pub(crate) fn read(value: Value) -> RedisResult<Option<StreamReadReply>> {
    let streams = match value {
        Value::Nil => return Ok(None),
        // RESP2: an array of [key, entries] pairs.
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                    Ok([key, ids]) => Ok((key, ids)),
                    Err(_) => Err(unexpected("a stream that is not a key and its entries")),
                },
                _ => Err(unexpected("a stream that is not an array")),
            })
            .collect::<RedisResult<Vec<_>>>()?,
        // RESP3: a map of key to entries.
        Value::Map(streams) => streams,
        _ => return Err(unexpected("a read reply that is no array")),
    };
    let keys = streams
        .into_iter()
        .map(|(key, ids)| {
            Ok(StreamKey {
                key: text(&key),
                ids: entries(ids)?,
            })
        })
        .collect::<RedisResult<_>>()?;
    Ok(Some(StreamReadReply { keys }))
}

/// The entries of an `XRANGE`, `XREVRANGE` or `XCLAIM` reply (or of one stream in a read).
pub(crate) fn entries(value: Value) -> RedisResult<Vec<StreamId>> {
    let Value::Array(entries) = value else {
        return Err(unexpected("entries that are no array"));
    };
    entries.into_iter().map(entry).collect()
}

/// One entry: `[id, [field, value, ...]]`. An entry whose fields are gone (nil, as
/// for an entry deleted while pending) has none.
fn entry(value: Value) -> RedisResult<StreamId> {
    let Value::Array(parts) = value else {
        return Err(unexpected("an entry that is no array"));
    };
    let Ok([id, fields]) = <[Value; 2]>::try_from(parts) else {
        return Err(unexpected("an entry that is not an id and its fields"));
    };
    let pairs = match fields {
        Value::Nil => Vec::new(),
        Value::Array(flat) => {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                pairs.push((name, value));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return Err(unexpected("an entry's fields that are no array")),
    };
    let map: HashMap<String, Value> = pairs
        .into_iter()
        .map(|(name, value)| (text(&name), value))
        .collect();
    Ok(StreamId {
        id: text(&id),
        map,
        ..StreamId::default()
    })
}

/// A name or an id as text, read lossily: bytes that are not UTF-8 make a name no
/// field is called by.
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// A reply not shaped as the command gives.
fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn a_field_name_that_is_not_utf8_spoils_only_its_own_field() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"pp:{r}:tasks"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(&[0xff, 0xfe]), bulk(&[1, 2, 0xff])]),
                ]),
                Value::Array(vec![
                    bulk(b"2-0"),
                    Value::Array(vec![bulk(b"seq"), bulk(b"4")]),
                ]),
                Value::Array(vec![bulk(b"3-0"), Value::Nil]),
            ]),
        ])]);
        let reply = read(reply).unwrap().unwrap();
        assert_eq!(reply.keys.len(), 1);
        assert_eq!(reply.keys[0].key, "pp:{r}:tasks");
        let ids = &reply.keys[0].ids;
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0].id, "1-0");
        assert_eq!(ids[0].map.len(), 1);
        assert!(!ids[0].map.contains_key("seq"));
        assert_eq!(ids[1].map.get("seq"), Some(&bulk(b"4")));
        assert!(ids[2].map.is_empty());
    }

    #[test]
    fn nil_is_nothing_read_and_odd_shapes_are_errors_not_panics() {
        assert!(read(Value::Nil).unwrap().is_none());
        assert!(read(Value::Int(3)).is_err());
        assert!(read(Value::Array(vec![Value::Int(3)])).is_err());
        assert!(read(Value::Array(vec![Value::Array(vec![bulk(b"k")])])).is_err());
        assert!(entries(Value::Array(vec![Value::Array(vec![bulk(b"1-0")])])).is_err());
        assert!(entries(bulk(b"x")).is_err());
        // An odd count of fields: the last name, with no value, is dropped.
        let odd = entries(Value::Array(vec![Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![bulk(b"seq"), bulk(b"1"), bulk(b"v")]),
        ])]))
        .unwrap();
        assert_eq!(odd[0].map.len(), 1);
    }

    #[test]
    fn a_resp3_read_reply_is_a_map_of_streams() {
        let reply = Value::Map(vec![(
            bulk(b"k"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"seq"), bulk(b"0")]),
            ])]),
        )]);
        let reply = read(reply).unwrap().unwrap();
        assert_eq!(reply.keys[0].ids[0].map.get("seq"), Some(&bulk(b"0")));
    }
}
