//! A ZooKeeper server id: the `N` of `server.N=` and the contents of `dataDir/myid`.
//!
//! ZooKeeper documents server ids as 1..=255, the StatefulSet numbers its pods from 0, and the
//! CRD's status shows ids as JSON integers (`int32`). One type holds the rule between them (the
//! pod with ordinal `n` is server `n + 1`) and the range, so that code keyed by server id
//! neither converts between integer types nor checks the range again.

use std::fmt;
use std::num::NonZeroU8;
use std::str::FromStr;

/// A server id, 1 to 255.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Myid(NonZeroU8);

/// A number or a text that is not a server id from 1 to 255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a myid from 1 to 255")]
pub struct InvalidMyid;

impl Myid {
    /// The server of the StatefulSet pod with `ordinal`; `None` beyond ordinal 254.
    pub fn from_ordinal(ordinal: u32) -> Option<Self> {
        let id = u8::try_from(ordinal.checked_add(1)?).ok()?;
        NonZeroU8::new(id).map(Self)
    }

    /// The ordinal of this server's StatefulSet pod.
    pub fn ordinal(self) -> u32 {
        u32::from(self) - 1
    }

    /// Servers 1..=`count`: the servers of a StatefulSet with `count` replicas (none beyond 255,
    /// which no server id names).
    pub fn up_to(count: u32) -> impl Iterator<Item = Self> {
        (0..count).map_while(Self::from_ordinal)
    }
}

impl TryFrom<u8> for Myid {
    type Error = InvalidMyid;

    fn try_from(id: u8) -> Result<Self, InvalidMyid> {
        NonZeroU8::new(id).map(Self).ok_or(InvalidMyid)
    }
}

/// From the status, which shows server ids as `int32`.
impl TryFrom<i32> for Myid {
    type Error = InvalidMyid;

    fn try_from(id: i32) -> Result<Self, InvalidMyid> {
        u8::try_from(id).map_err(|_| InvalidMyid)?.try_into()
    }
}

/// Reads the `N` of a `server.N` key (decimal, `1` to `255`), the form `Display` writes and the
/// myid file holds.
impl FromStr for Myid {
    type Err = InvalidMyid;

    fn from_str(text: &str) -> Result<Self, InvalidMyid> {
        text.parse::<u8>().map_err(|_| InvalidMyid)?.try_into()
    }
}

/// For the status, which shows server ids as `int32`.
impl From<Myid> for i32 {
    fn from(id: Myid) -> Self {
        i32::from(id.0.get())
    }
}

/// As a count: servers 1..=this.
impl From<Myid> for u32 {
    fn from(id: Myid) -> Self {
        u32::from(id.0.get())
    }
}

impl fmt::Display for Myid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The bare number, as logs and assertion messages showed ids before this type.
impl fmt::Debug for Myid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Server `id` in tests, which name servers by number.
#[cfg(test)]
pub fn id(id: u8) -> Myid {
    Myid::try_from(id).expect("a myid from 1 to 255")
}

/// Servers `ids` in tests.
#[cfg(test)]
pub fn ids(ids: &[u8]) -> std::collections::BTreeSet<Myid> {
    ids.iter().map(|&m| id(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_with_ordinal_n_is_server_n_plus_one() {
        for (ordinal, want) in [(0, Some(1)), (1, Some(2)), (4, Some(5)), (254, Some(255))] {
            let got = Myid::from_ordinal(ordinal);
            assert_eq!(got.map(i32::from), want, "ordinal {ordinal}");
            assert_eq!(got.map(Myid::ordinal), Some(ordinal));
        }
        assert_eq!(Myid::from_ordinal(255), None);
        assert_eq!(Myid::from_ordinal(u32::MAX), None);
    }

    #[test]
    fn servers_up_to_a_count_stop_at_255() {
        let ids = |count| Myid::up_to(count).map(i32::from).collect::<Vec<_>>();
        assert_eq!(ids(0), [0; 0]);
        assert_eq!(ids(3), [1, 2, 3]);
        assert_eq!(ids(300).len(), 255);
        assert_eq!(ids(300).last(), Some(&255));
    }

    #[test]
    fn reads_ids_from_1_to_255_only() {
        assert_eq!("7".parse::<Myid>(), Ok(id(7)));
        assert_eq!("255".parse::<Myid>(), Ok(id(255)));
        for text in ["0", "256", "-1", "", "x", " 1"] {
            assert_eq!(text.parse::<Myid>(), Err(InvalidMyid), "{text:?}");
        }
        assert_eq!(Myid::try_from(3i32), Ok(id(3)));
        for number in [0, -1, 256] {
            assert_eq!(Myid::try_from(number), Err(InvalidMyid), "{number}");
        }
        assert_eq!(Myid::try_from(0u8), Err(InvalidMyid));
    }

    #[test]
    fn shows_the_bare_number() {
        assert_eq!(id(12).to_string(), "12");
        assert_eq!(format!("{:?}", [id(1), id(2)]), "[1, 2]");
        assert_eq!(i32::from(id(255)), 255);
    }
}
