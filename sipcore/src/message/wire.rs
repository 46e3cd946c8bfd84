//! Serde for [`Message`]: a message is stored as its wire bytes and parsed
//! again when read, so call state that holds messages stays plain data a
//! standby node can be given.

use bytes::Bytes;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::Message;

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Message, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        Message::parse(Bytes::from(bytes)).map_err(de::Error::custom)
    }
}
