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
//! `jute.maxbuffer`), so its memory does not grow with the snapshot.

use adler2::Adler32;

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

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Read> {
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
    fn bytes(&mut self, what: &'static str) -> Result<&[u8], Read> {
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
                cursor.long()?;
                for _ in 0..cursor.length("ACL list")? {
                    cursor.int()?;
                    cursor.bytes("ACL scheme")?;
                    cursor.bytes("ACL id")?;
                }
                self.part = Part::Acls(left - 1);
            }
            Part::Znodes => {
                if cursor.bytes("znode path")? == b"/" {
                    self.part = Part::TreeSeal;
                } else {
                    cursor.bytes("znode data")?;
                    cursor.take(NODE_TAIL)?;
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
        }
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
