//! ZooKeeper's snapshot file, read as it streams past: the znodes it holds, and whether it is
//! whole by ZooKeeper's own checksums.
//!
//! A backup stores the snapshot exactly as the server streamed it; reading it on the way costs
//! one pass over bytes already in memory and proves more than the SHA-256 can (that only shows
//! the object is the bytes received). The layout is `FileSnap.serialize` in ZooKeeper 3.9, in
//! jute's binary encoding (big-endian; a string or buffer is an `int` length, -1 for null,
//! then its bytes):
//!
//! - `FileHeader`: magic `ZKSN`, version `int`, dbid `long`;
//! - the sessions (`SerializeUtils.serializeSnapshot`): a count, then `long` id and `int`
//!   timeout each;
//! - the ACL cache (`ReferenceCountedACLCache.serialize`): a count, then per entry a `long`
//!   index and a vector of ACLs (`int` perms, scheme and id strings);
//! - the tree (`DataTree.serializeNode`, depth first from the root, whose path is `""`): per
//!   znode its path, then the `DataNode` record: data buffer, `long` ACL index, and
//!   `StatPersisted` (czxid, mzxid, ctime, mtime `long`s; version, cversion, aversion `int`s;
//!   ephemeralOwner, pzxid `long`s); the path `"/"` ends the tree;
//! - a seal (`SnapStream.sealStream`): the Adler-32 of every byte before it as a `long`, then
//!   the string `"/"`;
//! - when the server has digests on (`zookeeper.digest.enabled`, the default), the tree's
//!   digest (`ZxidDigest`: zxid `long`, version `int`, digest `long`) and a seal; then, in
//!   3.9, the last processed zxid (`long`) and a seal. Each seal covers everything before it.
//!
//! The reader keeps only the bytes of the item it is in (a znode's data is at most
//! `jute.maxbuffer`), and the ACL cache, so its memory does not grow with the snapshot.
//!
//! It also hashes what a restore must bring back ([`PersistentContents`]): ZooKeeper's own
//! digest cannot tell, because it covers ephemeral znodes and their parents' child counters,
//! which change on their own once a restored server expires the sessions the snapshot holds
//! (DigestCalculator hashes the whole `StatPersisted`).

use std::collections::HashMap;

use adler2::Adler32;
use sha2::{Digest, Sha256};

/// What a whole snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Znodes in the tree, the root included. (ZooKeeper's `znode_count` counts the root
    /// twice: it is one more.)
    pub znodes: u64,
    /// Sessions open when it was taken (their ephemeral znodes are among the znodes).
    pub sessions: u64,
    /// The data tree's digest at the zxid it names, when the server computed digests.
    pub digest: Option<TreeDigest>,
    /// The persistent znodes outside `/zookeeper`, hashed.
    pub persistent: PersistentContents,
}

/// The persistent znodes of a tree outside `/zookeeper` (whose `config` is each ensemble's
/// own), hashed so that two trees holding the same such znodes hash alike whatever order they
/// are serialized in, and whatever ephemeral, container and TTL znodes they hold besides.
///
/// Each znode's SHA-256 covers its path, data, ACL (the entries, not the cache index, which
/// is a server's own), czxid, mzxid, ctime, mtime, version and aversion; not cversion or
/// pzxid, which change when an ephemeral child goes. The hash is the sum of the first 16 bytes
/// of each, modulo 2^128 (an additive hash, as ZooKeeper's own digest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistentContents {
    pub znodes: u64,
    pub hash: u128,
}

impl PersistentContents {
    /// The hash as the status and the metadata show it: 32 hex digits.
    pub fn hash_hex(&self) -> String {
        format!("{:032x}", self.hash)
    }

    fn add(&mut self, path: &[u8], data: &[u8], acl: &[u8], stat: &[u8]) {
        let mut node = Sha256::new();
        for part in [path, data, acl] {
            node.update((part.len() as u64).to_be_bytes());
            node.update(part);
        }
        // czxid, mzxid, ctime, mtime (4 longs), version (int), then aversion after cversion.
        node.update(&stat[..36]);
        node.update(&stat[40..44]);
        let digest = node.finalize();
        let first = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        self.znodes += 1;
        self.hash = self.hash.wrapping_add(first);
    }
}

/// `ZxidDigest`: the data tree's digest after the transaction `zxid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeDigest {
    pub zxid: u64,
    pub version: i32,
    pub value: u64,
}

/// Why a stream is not a whole ZooKeeper snapshot.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "it does not start with ZooKeeper's snapshot magic ZKSN (compressed snapshots are not supported)"
    )]
    NotASnapshot,
    #[error("it ends after {0} bytes, inside its {1}")]
    Truncated(u64, &'static str),
    #[error("its {what} at byte {at} is damaged ({detail})")]
    Damaged {
        what: &'static str,
        at: u64,
        detail: String,
    },
    #[error("its checksum at byte {at} is {found:#010x}, its bytes give {computed:#010x}")]
    Checksum { at: u64, found: u64, computed: u64 },
    #[error("{0} bytes follow its last checksum")]
    Trailing(usize),
}

/// Lengths beyond this are damage, not data: ZooKeeper refuses requests larger than
/// `jute.maxbuffer` (1 MiB by default; some raise it to a few MiB).
const MAX_FIELD: i32 = 64 << 20;
const MAGIC: &[u8; 4] = b"ZKSN";
/// Bytes of a `DataNode` after its data: the ACL index and `StatPersisted`.
const NODE_TAIL: usize = 8 + 4 * 8 + 3 * 4 + 2 * 8;
/// The longest trailer item and its seal: the digest (20 bytes), a checksum and `"/"`.
const LONGEST_SEALED_ITEM: usize = 20 + 8 + 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Header,
    SessionCount,
    Sessions(u64),
    AclCount,
    Acls(u64),
    Znodes,
    TreeSeal,
    /// After the tree's seal: the optional digest and last zxid, each with its seal.
    Trailer,
}

/// Reads a snapshot fed in chunks of any size: [`push`](Self::push) each, then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct SnapshotReader {
    part: Part,
    /// Bytes received and not yet dropped: `pending[read..]` is not yet read as a whole item.
    pending: Vec<u8>,
    read: usize,
    /// Offset of `pending[read]` in the stream.
    offset: u64,
    /// Adler-32 of every byte before `pending[read]`.
    checksum: Adler32,
    znodes: u64,
    sessions: u64,
    /// The ACL cache: each index's ACL list as serialized (a few entries in practice).
    acls: HashMap<u64, Vec<u8>>,
    persistent: PersistentContents,
    /// The tree digest, once its sealed trailer item is read.
    digest: Option<TreeDigest>,
    failed: Option<SnapshotError>,
}

impl Default for SnapshotReader {
    fn default() -> Self {
        SnapshotReader {
            part: Part::Header,
            pending: Vec::new(),
            read: 0,
            offset: 0,
            checksum: Adler32::new(),
            znodes: 0,
            sessions: 0,
            acls: HashMap::new(),
            persistent: PersistentContents::default(),
            digest: None,
            failed: None,
        }
    }
}

/// Reading one item from `pending`: `Short` when more bytes are needed.
enum Read {
    Short,
    Bad(SnapshotError),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Offset of `bytes[0]` in the stream, for errors.
    base: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Read> {
        let end = self.at.checked_add(n).ok_or(Read::Short)?;
        let taken = self.bytes.get(self.at..end).ok_or(Read::Short)?;
        self.at = end;
        Ok(taken)
    }

    fn int(&mut self) -> Result<i32, Read> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn long(&mut self) -> Result<u64, Read> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// A count or length, -1 (null) read as 0.
    fn length(&mut self, what: &'static str) -> Result<usize, Read> {
        let at = self.base + self.at as u64;
        match self.int()? {
            -1 => Ok(0),
            n if (0..=MAX_FIELD).contains(&n) => Ok(n as usize),
            n => Err(Read::Bad(SnapshotError::Damaged {
                what,
                at,
                detail: format!("length {n}"),
            })),
        }
    }

    /// A string or buffer.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Read> {
        let n = self.length(what)?;
        self.take(n)
    }
}

impl SnapshotReader {
    /// Reads the next bytes of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.pending.extend_from_slice(chunk);
        loop {
            match self.step() {
                Ok(0) => break,
                Ok(consumed) => {
                    let item = &self.pending[self.read..self.read + consumed];
                    self.checksum.write_slice(item);
                    self.read += consumed;
                    self.offset += consumed as u64;
                }
                Err(Read::Short) => break,
                Err(Read::Bad(error)) => {
                    self.failed = Some(error);
                    self.pending = Vec::new();
                    self.read = 0;
                    return;
                }
            }
        }
        // Once per chunk, not per item: the rest moves to the front.
        self.pending.drain(..self.read);
        self.read = 0;
    }

    /// Reads one item of the current part from `pending`; the bytes it used (0: the part ended
    /// without using any, or nothing is left to read).
    fn step(&mut self) -> Result<usize, Read> {
        let mut cursor = Cursor {
            bytes: &self.pending[self.read..],
            at: 0,
            base: self.offset,
        };
        match self.part {
            Part::Header => {
                if cursor.take(4)? != MAGIC {
                    return Err(Read::Bad(SnapshotError::NotASnapshot));
                }
                cursor.int()?;
                cursor.long()?;
                self.part = Part::SessionCount;
            }
            Part::SessionCount => {
                let count = cursor.int()?;
                self.part = Part::Sessions(u64::try_from(count).map_err(|_| {
                    Read::Bad(SnapshotError::Damaged {
                        what: "session count",
                        at: self.offset,
                        detail: count.to_string(),
                    })
                })?);
            }
            Part::Sessions(0) => {
                self.part = Part::AclCount;
                return self.step();
            }
            Part::Sessions(left) => {
                cursor.long()?;
                cursor.int()?;
                self.sessions += 1;
                self.part = Part::Sessions(left - 1);
            }
            Part::AclCount => {
                let count = cursor.length("ACL cache")?;
                self.part = Part::Acls(count as u64);
            }
            Part::Acls(0) => {
                self.part = Part::Znodes;
                return self.step();
            }
            Part::Acls(left) => {
                let index = cursor.long()?;
                let start = cursor.at;
                for _ in 0..cursor.length("ACL list")? {
                    cursor.int()?;
                    cursor.bytes("ACL scheme")?;
                    cursor.bytes("ACL id")?;
                }
                let list = cursor.bytes[start..cursor.at].to_vec();
                self.acls.insert(index, list);
                self.part = Part::Acls(left - 1);
            }
            Part::Znodes => {
                let path = cursor.bytes("znode path")?;
                if path == b"/" {
                    self.part = Part::TreeSeal;
                } else {
                    let data = cursor.bytes("znode data")?;
                    let tail = cursor.take(NODE_TAIL)?;
                    let (index, stat) = tail.split_at(8);
                    let ephemeral_owner = &stat[44..52];
                    let system = path == b"/zookeeper" || path.starts_with(b"/zookeeper/");
                    if ephemeral_owner == [0; 8] && !system {
                        // An index not in the cache (-1: world may do anything) is its own ACL.
                        let acl = self
                            .acls
                            .get(&u64::from_be_bytes(index.try_into().expect("8 bytes")))
                            .map_or(index, Vec::as_slice);
                        self.persistent.add(path, data, acl, stat);
                    }
                    self.znodes += 1;
                }
            }
            Part::TreeSeal => {
                self.seal(&mut cursor)?;
                self.part = Part::Trailer;
            }
            Part::Trailer => {
                // What comes before the next seal is known only once the seal is found: the
                // digest (20 bytes) or the last zxid (8). A seal's checksum is the Adler-32 of
                // all before it, which bytes of another shape match by chance only.
                let unread = &self.pending[self.read..];
                for len in [8, 20] {
                    let mut probe = Cursor {
                        bytes: unread,
                        at: len,
                        base: self.offset,
                    };
                    let Ok(found) = probe.long() else { continue };
                    let mut computed = self.checksum;
                    computed.write_slice(&unread[..len]);
                    if found == u64::from(computed.checksum()) && probe.bytes("seal").is_ok() {
                        if len == 20 {
                            self.digest = Some(TreeDigest {
                                zxid: u64::from_be_bytes(unread[0..8].try_into().expect("8 bytes")),
                                version: i32::from_be_bytes(
                                    unread[8..12].try_into().expect("4 bytes"),
                                ),
                                value: u64::from_be_bytes(
                                    unread[12..20].try_into().expect("8 bytes"),
                                ),
                            })
                            // ZooKeeper writes an empty digest (zxid 0) before its first
                            // transaction.
                            .filter(|digest| digest.zxid != 0);
                        }
                        return Ok(probe.at);
                    }
                }
                if unread.len() > LONGEST_SEALED_ITEM {
                    return Err(Read::Bad(SnapshotError::Trailing(unread.len())));
                }
                return Err(Read::Short);
            }
        }
        Ok(cursor.at)
    }

    /// Reads a seal: the checksum of all before it, and `"/"`.
    fn seal(&self, cursor: &mut Cursor<'_>) -> Result<(), Read> {
        let at = self.offset + cursor.at as u64;
        let mut computed = self.checksum;
        computed.write_slice(&cursor.bytes[..cursor.at]);
        let found = cursor.long()?;
        if found != u64::from(computed.checksum()) {
            return Err(Read::Bad(SnapshotError::Checksum {
                at,
                found,
                computed: u64::from(computed.checksum()),
            }));
        }
        if cursor.bytes("seal")? != b"/" {
            return Err(Read::Bad(SnapshotError::Damaged {
                what: "seal",
                at,
                detail: "no \"/\" after its checksum".to_owned(),
            }));
        }
        Ok(())
    }

    /// The summary of the whole stream, or why it is not a whole snapshot.
    pub fn finish(self) -> Result<SnapshotSummary, SnapshotError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let end = self.offset + self.pending.len() as u64;
        let inside = match self.part {
            Part::Header => "header",
            Part::SessionCount | Part::Sessions(_) => "sessions",
            Part::AclCount | Part::Acls(_) => "ACLs",
            Part::Znodes => "tree",
            Part::TreeSeal => "checksum",
            Part::Trailer if self.pending.is_empty() => "",
            Part::Trailer => return Err(SnapshotError::Trailing(self.pending.len())),
        };
        if !inside.is_empty() {
            return Err(SnapshotError::Truncated(end, inside));
        }
        Ok(SnapshotSummary {
            znodes: self.znodes,
            sessions: self.sessions,
            digest: self.digest,
            persistent: self.persistent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot ZooKeeper 3.9.6 wrote (standalone, digests on): the root, `/brokers`,
    /// `/brokers/ids`, `/config`, `/acl` (a digest ACL), a count quota on `/brokers` (four
    /// znodes under `/zookeeper/quota`), `/zookeeper`, `/zookeeper/config`; five sessions.
    const SNAPSHOT: &[u8] = include_bytes!("testdata/snapshot.c");

    fn read(chunks: impl IntoIterator<Item = Vec<u8>>) -> Result<SnapshotSummary, SnapshotError> {
        let mut reader = SnapshotReader::default();
        for chunk in chunks {
            reader.push(&chunk);
        }
        reader.finish()
    }

    fn expected() -> SnapshotSummary {
        SnapshotSummary {
            znodes: 11,
            sessions: 5,
            digest: Some(TreeDigest {
                zxid: 0xc,
                version: 2,
                value: 0x0003_289c_cdfa,
            }),
            // The root, /brokers, /brokers/ids, /config and /acl.
            persistent: PersistentContents {
                znodes: 5,
                hash: 0xdee9_a583_3a4f_2cf2_a1fc_5d99_cdc8_27b3,
            },
        }
    }

    /// A `StatPersisted` with the given fields, the others distinct.
    fn stat(version: i32, cversion: i32, aversion: i32, pzxid: u64) -> Vec<u8> {
        let mut stat = Vec::new();
        for long in [1u64, 2, 3, 4] {
            stat.extend(long.to_be_bytes());
        }
        for int in [version, cversion, aversion] {
            stat.extend(int.to_be_bytes());
        }
        stat.extend(0u64.to_be_bytes());
        stat.extend(pzxid.to_be_bytes());
        stat
    }

    #[test]
    fn persistent_contents_hash_what_a_restore_keeps_in_any_order() {
        let hashed = |nodes: &[(&str, &str, Vec<u8>)]| {
            let mut contents = PersistentContents::default();
            for (path, data, stat) in nodes {
                contents.add(path.as_bytes(), data.as_bytes(), b"acl", stat);
            }
            contents
        };
        let a = ("/a", "1", stat(1, 1, 0, 9));
        let b = ("/b", "2", stat(0, 0, 0, 9));
        let tree = hashed(&[a.clone(), b.clone()]);
        assert_eq!(tree.znodes, 2);
        assert_eq!(
            tree,
            hashed(&[b.clone(), a.clone()]),
            "order does not count"
        );
        // A child that came or went (cversion, pzxid): the same.
        assert_eq!(tree, hashed(&[("/a", "1", stat(1, 7, 0, 12)), b.clone()]));
        // Data, version, ACL version, path: another hash.
        for changed in [
            ("/a", "x", stat(1, 1, 0, 9)),
            ("/a", "1", stat(2, 1, 0, 9)),
            ("/a", "1", stat(1, 1, 1, 9)),
            ("/c", "1", stat(1, 1, 0, 9)),
        ] {
            assert_ne!(tree, hashed(&[changed.clone(), b.clone()]), "{changed:?}");
        }
        // Path and data are length-prefixed: moving a byte between them shows.
        assert_ne!(
            hashed(&[("/ab", "", stat(0, 0, 0, 0))]),
            hashed(&[("/a", "b", stat(0, 0, 0, 0))])
        );
    }

    #[test]
    fn a_whole_snapshot_gives_its_znodes_sessions_and_digest_in_chunks_of_any_size() {
        assert_eq!(read([SNAPSHOT.to_vec()]), Ok(expected()));
        for size in [1, 3, 7, 64, 1000] {
            let chunks = SNAPSHOT.chunks(size).map(<[u8]>::to_vec);
            assert_eq!(read(chunks), Ok(expected()), "chunks of {size}");
        }
    }

    #[test]
    fn a_truncated_snapshot_says_where_it_ends() {
        for (len, inside) in [
            (3, "header"),
            (40, "sessions"),
            (0x80, "ACLs"),
            (0x300, "tree"),
            (0x53a, "checksum"),
        ] {
            assert_eq!(
                read([SNAPSHOT[..len].to_vec()]),
                Err(SnapshotError::Truncated(len as u64, inside)),
                "{len} bytes"
            );
        }
        // Cut inside the digest's part: bytes that no seal covers.
        let cut = SNAPSHOT.len() - 30;
        assert!(matches!(
            read([SNAPSHOT[..cut].to_vec()]),
            Err(SnapshotError::Trailing(_))
        ));
    }

    #[test]
    fn a_changed_byte_fails_a_checksum_or_the_layout() {
        // A znode's data, an ACL id, a stat field, the digest: every byte is covered.
        for at in [0x192, 0xc0, 0x1a8, 0x550] {
            let mut damaged = SNAPSHOT.to_vec();
            damaged[at] ^= 0x01;
            let error = read([damaged]).expect_err("a damaged snapshot");
            assert!(
                matches!(
                    error,
                    SnapshotError::Checksum { .. } | SnapshotError::Trailing(_)
                ),
                "byte {at:#x}: {error}"
            );
        }
        let mut length = SNAPSHOT.to_vec();
        length[0x125] = 0x7f; // the length of /brokers' path
        assert!(matches!(
            read([length]),
            Err(SnapshotError::Damaged {
                what: "znode path",
                ..
            })
        ));
        assert_eq!(
            read([b"PK\x03\x04not a snapshot".to_vec()]),
            Err(SnapshotError::NotASnapshot)
        );
    }
}
