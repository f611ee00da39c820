//! `client.server` and `client.server_name`: the one server a home connects to, or the servers
//! it fails over between (README.md, "Failover and BGP"). Each key takes one value or a list,
//! so that a file written for one server keeps working.

use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// One value or a non-empty list of them: `server = "192.0.2.1"` or
/// `server = ["192.0.2.1", "198.51.100.1"]`. Written back as it came: a single value as a
/// string, several as a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMore<T>(Vec<T>);

impl<T> OneOrMore<T> {
    /// A single value.
    pub fn one(value: T) -> Self {
        OneOrMore(vec![value])
    }

    /// A list; `None` when it is empty.
    pub fn many(values: Vec<T>) -> Option<Self> {
        (!values.is_empty()).then_some(OneOrMore(values))
    }

    /// The first value (the one a single-valued key holds).
    pub fn first(&self) -> &T {
        // Never empty: every constructor and the parser refuse an empty list.
        &self.0[0]
    }

    /// Every value, in the file's order.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: the list is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut()
    }
}

/// `a` for one value, `[a, b]` for several (logs and error messages).
impl<T: fmt::Display> fmt::Display for OneOrMore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(f, "{only}");
        }
        let items: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", items.join(", "))
    }
}

impl<T: fmt::Display> Serialize for OneOrMore<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let [only] = self.0.as_slice() {
            return serializer.collect_str(only);
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for value in &self.0 {
            seq.serialize_element(&value.to_string())?;
        }
        seq.end()
    }
}

/// One entry of the list, parsed from its string form: its own deserializer, so that an error
/// carries the entry's index in its key (`client.server[1]`).
struct Entry<T>(T);

impl<'de, T: FromStr> Deserialize<'de> for Entry<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(Entry)
            .map_err(|e| de::Error::custom(format!("`{text}`: {e}")))
    }
}

impl<'de, T: FromStr> Deserialize<'de> for OneOrMore<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMoreVisitor<T>(PhantomData<T>);

        impl<'de, T: FromStr> Visitor<'de> for OneOrMoreVisitor<T>
        where
            T::Err: fmt::Display,
        {
            type Value = OneOrMore<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a non-empty list of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.parse()
                    .map(OneOrMore::one)
                    .map_err(|e| E::custom(format!("`{text}`: {e}")))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(Entry(value)) = seq.next_element::<Entry<T>>()? {
                    values.push(value);
                }
                OneOrMore::many(values).ok_or_else(|| de::Error::custom("the list is empty"))
            }
        }

        deserializer.deserialize_any(OneOrMoreVisitor(PhantomData))
    }
}

/// One server a home may connect to: its address and the identity its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    /// The server's IPv4 address.
    pub address: Ipv4Addr,
    /// The server's IKE identity (a DNS name in its certificate), in lower case.
    pub name: String,
}

/// Checks `client.server` and `client.server_name` together and puts the names in lower case:
/// no address twice, and either one name for every server or one name per server, in order.
pub(crate) fn check(
    servers: &OneOrMore<Ipv4Addr>,
    names: &mut OneOrMore<String>,
    file: &Path,
) -> Result<(), ConfigError> {
    for (i, address) in servers.as_slice().iter().enumerate() {
        if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
            return Err(ConfigError::new(
                file,
                entry_key("client.server", servers.len(), i),
                format!("{address} is not a server's unicast address"),
            ));
        }
        if let Some(j) = servers.as_slice()[..i].iter().position(|a| a == address) {
            return Err(ConfigError::new(
                file,
                entry_key("client.server", servers.len(), i),
                format!("{address} is also client.server[{j}]"),
            ));
        }
    }
    let count = names.len();
    for (i, name) in names.values_mut().enumerate() {
        crate::normalise_name(name, &entry_key("client.server_name", count, i), file)?;
    }
    if count != 1 && count != servers.len() {
        return Err(ConfigError::new(
            file,
            "client.server_name",
            format!(
                "lists {count} names for the {} servers of client.server; give one name for \
                 all of them or one per server, in the same order",
                servers.len()
            ),
        ));
    }
    Ok(())
}

/// The servers in the order the home tries them, each with the identity it must prove.
pub(crate) fn targets(
    servers: &OneOrMore<Ipv4Addr>,
    names: &OneOrMore<String>,
) -> Vec<ServerTarget> {
    servers
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, &address)| ServerTarget {
            address,
            name: names
                .as_slice()
                .get(i)
                .unwrap_or_else(|| names.first())
                .clone(),
        })
        .collect()
}

/// `key` for a single value, `key[i]` for an entry of a list.
fn entry_key(key: &str, count: usize, i: usize) -> String {
    if count == 1 {
        key.to_string()
    } else {
        format!("{key}[{i}]")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::ClientConfig;
    use crate::minimal::CLIENT_TOML as CLIENT;

    fn with(server: &str, server_name: &str) -> Result<ClientConfig, String> {
        let text = CLIENT
            .replace("server = \"192.0.2.1\"", &format!("server = {server}"))
            .replace(
                "server_name = \"vps.example\"",
                &format!("server_name = {server_name}"),
            );
        ClientConfig::from_toml(Path::new("client.toml"), &text).map_err(|e| e.to_string())
    }

    fn pairs(config: &ClientConfig) -> Vec<(String, String)> {
        config
            .servers()
            .into_iter()
            .map(|t| (t.address.to_string(), t.name))
            .collect()
    }

    #[test]
    fn a_single_server_still_loads() {
        let c = with("\"192.0.2.1\"", "\"VPS.example\"").unwrap();
        assert_eq!(pairs(&c), [("192.0.2.1".into(), "vps.example".into())]);
        assert_eq!(c.client.server.to_string(), "192.0.2.1");
    }

    #[test]
    fn a_list_of_servers_pairs_each_with_its_name_in_order() {
        let c = with(
            "[\"192.0.2.1\", \"198.51.100.1\"]",
            "[\"a.example\", \"B.example\"]",
        )
        .unwrap();
        assert_eq!(
            pairs(&c),
            [
                ("192.0.2.1".into(), "a.example".into()),
                ("198.51.100.1".into(), "b.example".into())
            ]
        );
    }

    #[test]
    fn one_name_stands_for_every_server() {
        let c = with("[\"192.0.2.1\", \"198.51.100.1\"]", "\"vps.example\"").unwrap();
        assert_eq!(
            pairs(&c),
            [
                ("192.0.2.1".into(), "vps.example".into()),
                ("198.51.100.1".into(), "vps.example".into())
            ]
        );
    }

    #[test]
    fn a_list_round_trips_through_toml_and_a_single_value_stays_a_string() {
        let c = with("[\"192.0.2.1\", \"198.51.100.1\"]", "\"vps.example\"").unwrap();
        let text = c.to_toml();
        assert!(text.contains("server_name = \"vps.example\""), "{text}");
        let again = ClientConfig::from_toml(Path::new("client.toml"), &text).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn bad_server_lists_are_one_line_naming_the_entry() {
        let cases = [
            (
                "[\"192.0.2.1\", \"vps\"]",
                "\"a.example\"",
                "client.toml: client.server[1]: `vps`: invalid IPv4 address syntax",
            ),
            (
                "[]",
                "\"a.example\"",
                "client.toml: client.server: the list is empty",
            ),
            (
                "[\"192.0.2.1\", \"192.0.2.1\"]",
                "\"a.example\"",
                "client.toml: client.server[1]: 192.0.2.1 is also client.server[0]",
            ),
            (
                "[\"192.0.2.1\", \"0.0.0.0\"]",
                "\"a.example\"",
                "client.toml: client.server[1]: 0.0.0.0 is not a server's unicast address",
            ),
            (
                "[\"192.0.2.1\", \"198.51.100.1\"]",
                "[\"a.example\", \"b.example\", \"c.example\"]",
                "client.toml: client.server_name: lists 3 names for the 2 servers of \
                 client.server; give one name for all of them or one per server, in the same order",
            ),
            (
                "[\"192.0.2.1\", \"198.51.100.1\"]",
                "[\"a.example\", \"b..example\"]",
                "client.toml: client.server_name[1]: ",
            ),
            (
                "[\"192.0.2.1\", 7]",
                "\"a.example\"",
                "client.toml: client.server[1]: invalid type: integer `7`, expected a string",
            ),
        ];
        for (server, name, expected) in cases {
            let error = with(server, name).unwrap_err();
            // The key first, then (for a value the parser refused) where it stands, then why.
            let (key, why) = expected.split_at(expected.find(": ").unwrap() + 2);
            let (key, why) = match why.split_once(": ") {
                Some((field, why)) => (format!("{key}{field}: "), why),
                None => (key.to_string(), why),
            };
            assert!(
                error.starts_with(&key) && error.contains(why),
                "server = {server}, server_name = {name}:\n  got  {error}\n  want {expected}"
            );
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }
}
