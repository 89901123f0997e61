//! The linearizability search for one register: Wing & Gong's algorithm with Lowe's memo,
//! over the register-with-version model. See the parent module for why each pruning is sound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::history::{Call, Op, Outcome, RegisterState};

/// The model's state. A `None` field is not known yet: a window that starts mid-run starts
/// from any state, and the first operation that depends on a field pins it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    pub value: Option<u64>,
    pub version: Option<i64>,
}

impl State {
    /// Any state at all (the start of a window that begins mid-run).
    pub const ANY: State = State {
        value: None,
        version: None,
    };

    pub fn known(state: RegisterState) -> State {
        State {
            value: Some(state.value),
            version: Some(state.version as i64),
        }
    }

    fn is_any(self) -> bool {
        self.value.is_none() && self.version.is_none()
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.value, self.version) {
            (Some(value), Some(version)) => write!(f, "{value}@v{version}"),
            (None, None) => write!(f, "any state"),
            (value, version) => write!(f, "{value:?}@v{version:?}"),
        }
    }
}

/// What an operation does to the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Write {
        value: u64,
    },
    Cas {
        expected: i64,
        value: u64,
    },
    /// A linearizable read (a final read) that saw `value` at `version`.
    Read {
        value: u64,
        version: i64,
    },
}

/// An operation as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinOp {
    /// The history's id.
    pub id: u64,
    pub effect: Effect,
    /// The version a write or CAS returned; None if its outcome is unknown.
    pub returned: Option<i64>,
    pub invoke: u64,
    /// None: the outcome is unknown, so it may take effect at any time after `invoke`, or never.
    pub complete: Option<u64>,
}

impl LinOp {
    /// The operations of the write check among `ops` (one register's): acknowledged and
    /// unknown writes and CASes, and final reads. Definite failures did not take effect, and
    /// reads other than final ones are not linearizable in ZooKeeper: both are left out.
    pub fn from_history(ops: &[&Op]) -> Vec<LinOp> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let effect = match (op.call, &op.outcome) {
                (Call::Read, _) | (_, Outcome::Fail { .. }) => continue,
                (
                    Call::FinalRead,
                    Outcome::Ok {
                        version,
                        value: Some(value),
                    },
                ) => Effect::Read {
                    value: *value,
                    version: *version as i64,
                },
                (Call::FinalRead, _) => continue,
                (Call::Write { value }, _) => Effect::Write { value },
                (
                    Call::Cas {
                        expected_version,
                        value,
                    },
                    _,
                ) => Effect::Cas {
                    expected: expected_version as i64,
                    value,
                },
            };
            let (returned, complete) = match &op.outcome {
                Outcome::Ok { version, .. } => (Some(*version as i64), Some(op.complete)),
                _ => (None, None),
            };
            out.push(LinOp {
                id: op.id,
                effect,
                returned: returned.filter(|_| !matches!(effect, Effect::Read { .. })),
                invoke: op.invoke,
                complete,
            });
        }
        out
    }

    /// The same operation with its outcome forgotten (it may or may not have taken effect);
    /// None for a read, which then says nothing.
    pub fn relaxed(self) -> Option<LinOp> {
        match self.effect {
            Effect::Read { .. } => None,
            _ => Some(LinOp {
                returned: None,
                complete: None,
                ..self
            }),
        }
    }

    /// The version the register must have just before a definite operation takes effect.
    fn pin(&self) -> Option<i64> {
        self.complete?;
        match self.effect {
            Effect::Write { .. } => self.returned.map(|r| r - 1),
            Effect::Cas { expected, .. } => Some(expected),
            Effect::Read { version, .. } => Some(version),
        }
    }
}

/// The register model: the state after `op` takes effect in `state`, or None if it cannot.
pub fn step(state: State, op: &LinOp) -> Option<State> {
    match op.effect {
        Effect::Write { value } => {
            let version = match (state.version, op.returned) {
                (Some(v), Some(r)) if v + 1 != r => return None,
                (_, Some(r)) => Some(r),
                (v, None) => v.map(|v| v + 1),
            };
            Some(State {
                value: Some(value),
                version,
            })
        }
        Effect::Cas { expected, value } => {
            if state.version.is_some_and(|v| v != expected)
                || op.returned.is_some_and(|r| r != expected + 1)
            {
                return None;
            }
            Some(State {
                value: Some(value),
                version: Some(expected + 1),
            })
        }
        Effect::Read { value, version } => {
            if state.value.is_some_and(|v| v != value)
                || state.version.is_some_and(|v| v != version)
            {
                return None;
            }
            Some(State {
                value: Some(value),
                version: Some(version),
            })
        }
    }
}

/// How far the search got before it failed: the deepest point of the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deepest {
    /// How many of the operations that completed were linearized there.
    pub linearized: usize,
    pub definite: usize,
    /// The register's state there.
    pub state: State,
    /// The last operations linearized before it (ids, oldest first).
    pub recent: Vec<u64>,
    /// The first operation that had to take effect next but could not (id).
    pub blocked: Option<u64>,
    /// An operation that could take effect next (id), the state it left, and the pending
    /// operation (id) that could then never take effect.
    pub dead_end: Option<(u64, State, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Violation(Deepest),
    /// The node budget ran out (only searches given a budget).
    GaveUp,
}

/// A search's verdict and cost.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub verdict: Verdict,
    /// Search nodes: partial linearizations reached and remembered.
    pub nodes: u64,
}

/// FxHash's mixing: fast, and good enough for the memo's keys.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.write_u64(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Memo = HashSet<Box<[u64]>, BuildHasherDefault<FxHasher>>;

#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// Scanning the entry list at this position for definite candidates.
    Entry(usize),
    /// Trying unknown operations invoked by `boundary` (the earliest pending completion),
    /// from candidate slot `slot` on.
    Unknown { boundary: u64, slot: usize },
}

#[derive(Clone, Copy, Debug)]
enum Taken {
    Definite(usize),
    Unknown(usize),
}

struct Frame {
    taken: Taken,
    state: State,
    maxlin: isize,
    resume: Cursor,
}

/// The search's data for one run.
struct Search<'a> {
    def: Vec<&'a LinOp>,
    unk: Vec<&'a LinOp>,
    // The entry list: calls and returns of the definite operations in time order, calls first
    // at equal times (operations that touch are concurrent). `head` is the sentinel.
    head: usize,
    next: Vec<usize>,
    prev: Vec<usize>,
    entry_op: Vec<usize>,
    entry_ret: Vec<bool>,
    entry_time: Vec<u64>,
    call_pos: Vec<usize>,
    ret_pos: Vec<usize>,
    // Linearized definite operations, as a bitset over their invocation order.
    def_bits: Vec<u64>,
    // Pending definite operations' pins, for the "dead state" test: a segment tree of minima.
    seg: Vec<i64>,
    seg_size: usize,
    // Unknown operations: classes of interchangeable ones (see the module documentation).
    // Classes 0..nb are the CASes expecting b_expected[c]; class nb the blind writes.
    nb: usize,
    b_index: HashMap<i64, usize>,
    members: Vec<Vec<usize>>,
    taken: Vec<usize>,
    class_of: Vec<Option<usize>>,
    observed: Vec<usize>,
    unk_lin: Vec<bool>,
    unk_sorted: Vec<u32>,
    unk_words: usize,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [LinOp]) -> Self {
        let mut def: Vec<&LinOp> = ops.iter().filter(|o| o.complete.is_some()).collect();
        def.sort_by_key(|o| (o.invoke, o.id));
        let mut unk: Vec<&LinOp> = ops.iter().filter(|o| o.complete.is_none()).collect();
        unk.sort_by_key(|o| (o.invoke, o.id));
        let d = def.len();

        let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * d);
        for (i, op) in def.iter().enumerate() {
            entries.push((op.invoke, false, i));
            entries.push((op.complete.unwrap(), true, i));
        }
        entries.sort_unstable();
        let n = entries.len();
        let head = n;
        let mut next = vec![0; n + 1];
        let mut prev = vec![0; n + 1];
        for p in 0..=n {
            next[p] = (p + 1) % (n + 1);
            prev[p] = (p + n) % (n + 1);
        }
        let mut call_pos = vec![0; d];
        let mut ret_pos = vec![0; d];
        for (p, &(_, ret, i)) in entries.iter().enumerate() {
            if ret {
                ret_pos[i] = p;
            } else {
                call_pos[i] = p;
            }
        }

        let seg_size = d.next_power_of_two().max(1);
        let mut seg = vec![i64::MAX; 2 * seg_size];
        for (i, op) in def.iter().enumerate() {
            seg[seg_size + i] = op.pin().unwrap_or(i64::MAX);
        }
        for k in (1..seg_size).rev() {
            seg[k] = seg[2 * k].min(seg[2 * k + 1]);
        }

        // Values a linearizable read saw: an unknown write of one of those is no longer
        // interchangeable with the others.
        let seen: HashSet<u64> = def
            .iter()
            .filter_map(|op| match op.effect {
                Effect::Read { value, .. } => Some(value),
                _ => None,
            })
            .collect();
        let mut cas_classes: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        let mut blind = Vec::new();
        let mut observed = Vec::new();
        for (j, op) in unk.iter().enumerate() {
            match op.effect {
                Effect::Write { value } if !seen.contains(&value) => blind.push(j),
                Effect::Cas { expected, value } if !seen.contains(&value) => {
                    cas_classes.entry(expected).or_default().push(j)
                }
                _ => observed.push(j),
            }
        }
        let nb = cas_classes.len();
        let mut b_index = HashMap::new();
        let mut members = Vec::with_capacity(nb + 1);
        let mut class_of = vec![None; unk.len()];
        for (c, (expected, list)) in cas_classes.into_iter().enumerate() {
            b_index.insert(expected, c);
            for &j in &list {
                class_of[j] = Some(c);
            }
            members.push(list);
        }
        for &j in &blind {
            class_of[j] = Some(nb);
        }
        members.push(blind);

        Search {
            head,
            next,
            prev,
            entry_op: entries.iter().map(|e| e.2).collect(),
            entry_ret: entries.iter().map(|e| e.1).collect(),
            entry_time: entries.iter().map(|e| e.0).collect(),
            call_pos,
            ret_pos,
            def_bits: vec![0; d.div_ceil(64)],
            seg,
            seg_size,
            nb,
            b_index,
            taken: vec![0; members.len()],
            members,
            class_of,
            observed,
            unk_lin: vec![false; unk.len()],
            unk_sorted: Vec::new(),
            unk_words: unk.len().div_ceil(64),
            def,
            unk,
        }
    }

    fn unlink(&mut self, p: usize) {
        let (a, b) = (self.prev[p], self.next[p]);
        self.next[a] = b;
        self.prev[b] = a;
    }

    fn relink(&mut self, p: usize) {
        let (a, b) = (self.prev[p], self.next[p]);
        self.next[a] = p;
        self.prev[b] = p;
    }

    fn seg_set(&mut self, i: usize, value: i64) {
        let mut k = self.seg_size + i;
        self.seg[k] = value;
        while k > 1 {
            k /= 2;
            self.seg[k] = self.seg[2 * k].min(self.seg[2 * k + 1]);
        }
    }

    fn take_definite(&mut self, i: usize) {
        self.unlink(self.call_pos[i]);
        self.unlink(self.ret_pos[i]);
        self.def_bits[i / 64] |= 1 << (i % 64);
        self.seg_set(i, i64::MAX);
    }

    fn untake_definite(&mut self, i: usize) {
        self.relink(self.ret_pos[i]);
        self.relink(self.call_pos[i]);
        self.def_bits[i / 64] &= !(1 << (i % 64));
        self.seg_set(i, self.def[i].pin().unwrap_or(i64::MAX));
    }

    fn take_unknown(&mut self, j: usize) {
        self.unk_lin[j] = true;
        if let Some(c) = self.class_of[j] {
            self.taken[c] += 1;
        }
        let at = self.unk_sorted.partition_point(|&x| (x as usize) < j);
        self.unk_sorted.insert(at, j as u32);
    }

    fn untake_unknown(&mut self, j: usize) {
        self.unk_lin[j] = false;
        if let Some(c) = self.class_of[j] {
            self.taken[c] -= 1;
        }
        let at = self.unk_sorted.partition_point(|&x| (x as usize) < j);
        self.unk_sorted.remove(at);
    }

    /// A state from which some pending definite operation can never take effect: versions
    /// only grow, and each pending one needs a version no higher than its pin.
    fn dead(&self, state: State) -> bool {
        state.version.is_some_and(|v| v > self.seg[1])
    }

    /// The pending definite operation with the lowest pin (there is one).
    fn lowest_pin(&self) -> usize {
        let mut k = 1;
        while k < self.seg_size {
            k = if self.seg[2 * k] <= self.seg[2 * k + 1] {
                2 * k
            } else {
                2 * k + 1
            };
        }
        k - self.seg_size
    }

    /// The memo's key for the current linearized set and `state`. Exact and compact: every
    /// definite operation before the first pending one (in invocation order) is linearized,
    /// none after the last linearized one, so only the words between are stored; the unknown
    /// ones as a bitset or, when fewer are linearized, as their sorted indices.
    fn key(&self, state: State, maxlin: isize) -> Box<[u64]> {
        let first = if self.next[self.head] == self.head {
            self.def.len()
        } else {
            self.entry_op[self.next[self.head]]
        };
        let mut key = Vec::with_capacity(8);
        key.push(state.value.unwrap_or(0));
        key.push(state.version.unwrap_or(0) as u64);
        let flags = state.value.is_some() as u64 | (state.version.is_some() as u64) << 1;
        key.push(flags | (first as u64) << 2);
        if maxlin >= first as isize {
            let (w0, w1) = (first / 64, maxlin as usize / 64 + 1);
            key.push((w1 - w0) as u64);
            key.extend_from_slice(&self.def_bits[w0..w1]);
        } else {
            key.push(0);
        }
        let k = self.unk_sorted.len();
        if k.div_ceil(2) < self.unk_words {
            key.push(k as u64);
            key.extend(
                self.unk_sorted
                    .chunks(2)
                    .map(|c| c[0] as u64 | (c.get(1).map_or(u32::MAX, |&x| x) as u64) << 32),
            );
        } else {
            key.push(u64::MAX);
            let mut words = vec![0u64; self.unk_words];
            for &j in &self.unk_sorted {
                words[j as usize / 64] |= 1 << (j % 64);
            }
            key.extend(words);
        }
        key.into_boxed_slice()
    }

    /// The first pending member of class `c`, if it was invoked by `boundary`.
    fn representative(&self, c: usize, boundary: u64) -> Option<usize> {
        let j = *self.members[c].get(self.taken[c])?;
        (self.unk[j].invoke <= boundary).then_some(j)
    }

    /// The next unknown candidate from `slot` on, and the slot after it. The slots: the CAS
    /// classes, the blind writes, then each unknown operation whose value a linearizable read
    /// saw. Each class offers only its first pending member (the members are interchangeable).
    fn unknown_candidate(
        &self,
        state: State,
        boundary: u64,
        mut slot: usize,
    ) -> Option<(usize, usize)> {
        if state.is_any() {
            // Nothing an unknown operation does from any state helps: any state is as good.
            return None;
        }
        let nb = self.nb;
        loop {
            if slot < nb {
                if let Some(v) = state.version {
                    // Only the class expecting this version can take effect.
                    match self.b_index.get(&v) {
                        Some(&c) if c >= slot => slot = c,
                        _ => {
                            slot = nb;
                            continue;
                        }
                    }
                }
                let c = slot;
                slot += 1;
                if let Some(j) = self.representative(c, boundary) {
                    return Some((j, slot));
                }
            } else if slot == nb {
                slot += 1;
                // A blind write where a CAS expecting this version could go is dominated by
                // that CAS: the CAS is useless anywhere else.
                let cas_here = state
                    .version
                    .and_then(|v| self.b_index.get(&v))
                    .is_some_and(|&c| self.representative(c, boundary).is_some());
                if cas_here {
                    continue;
                }
                if let Some(j) = self.representative(nb, boundary) {
                    return Some((j, slot));
                }
            } else {
                let j = *self.observed.get(slot - nb - 1)?;
                slot += 1;
                if !self.unk_lin[j] && self.unk[j].invoke <= boundary {
                    return Some((j, slot));
                }
            }
        }
    }

    fn run(&mut self, start: State, budget: Option<u64>) -> SearchResult {
        let definite = self.def.len();
        let mut memo = Memo::default();
        let mut nodes = 0u64;
        let mut state = start;
        let mut maxlin: isize = -1;
        let mut linearized = 0usize;
        let mut stack: Vec<Frame> = Vec::new();
        let mut deepest = Deepest {
            linearized: 0,
            definite,
            state,
            recent: Vec::new(),
            blocked: None,
            dead_end: None,
        };
        let mut cursor = Cursor::Entry(self.next[self.head]);
        if self.dead(state) {
            deepest.blocked = Some(self.def[self.lowest_pin()].id);
            return SearchResult {
                verdict: Verdict::Violation(deepest),
                nodes,
            };
        }
        loop {
            if self.next[self.head] == self.head {
                return SearchResult {
                    verdict: Verdict::Linearizable,
                    nodes,
                };
            }
            // The candidate to try, if any; None means backtrack.
            let (taken, next_cursor) = match cursor {
                Cursor::Entry(p) => {
                    debug_assert_ne!(p, self.head, "every call is followed by its return");
                    if self.entry_ret[p] {
                        if linearized == deepest.linearized && deepest.blocked.is_none() {
                            deepest.blocked = Some(self.def[self.entry_op[p]].id);
                        }
                        cursor = Cursor::Unknown {
                            boundary: self.entry_time[p],
                            slot: 0,
                        };
                        continue;
                    }
                    (
                        Some(Taken::Definite(self.entry_op[p])),
                        Cursor::Entry(self.next[p]),
                    )
                }
                Cursor::Unknown { boundary, slot } => {
                    match self.unknown_candidate(state, boundary, slot) {
                        Some((j, slot)) => {
                            (Some(Taken::Unknown(j)), Cursor::Unknown { boundary, slot })
                        }
                        None => (None, cursor),
                    }
                }
            };
            let Some(taken) = taken else {
                // Every candidate here failed: undo the last step.
                let Some(frame) = stack.pop() else {
                    return SearchResult {
                        verdict: Verdict::Violation(deepest),
                        nodes,
                    };
                };
                state = frame.state;
                maxlin = frame.maxlin;
                cursor = match frame.taken {
                    Taken::Definite(i) => {
                        self.untake_definite(i);
                        linearized -= 1;
                        Cursor::Entry(self.next[self.call_pos[i]])
                    }
                    Taken::Unknown(j) => {
                        self.untake_unknown(j);
                        frame.resume
                    }
                };
                continue;
            };
            let op = match taken {
                Taken::Definite(i) => self.def[i],
                Taken::Unknown(j) => self.unk[j],
            };
            cursor = next_cursor;
            let Some(after) = step(state, op) else {
                continue;
            };
            let new_maxlin = match taken {
                Taken::Definite(i) => {
                    self.take_definite(i);
                    maxlin.max(i as isize)
                }
                Taken::Unknown(j) => {
                    self.take_unknown(j);
                    maxlin
                }
            };
            if self.dead(after) {
                if linearized == deepest.linearized && deepest.dead_end.is_none() {
                    deepest.dead_end = Some((op.id, after, self.def[self.lowest_pin()].id));
                }
            } else if memo.insert(self.key(after, new_maxlin)) {
                nodes += 1;
                if budget.is_some_and(|b| nodes > b) {
                    return SearchResult {
                        verdict: Verdict::GaveUp,
                        nodes,
                    };
                }
                stack.push(Frame {
                    taken,
                    state,
                    maxlin,
                    resume: next_cursor,
                });
                state = after;
                maxlin = new_maxlin;
                if let Taken::Definite(_) = taken {
                    linearized += 1;
                    if linearized > deepest.linearized {
                        let recent = stack[stack.len().saturating_sub(6)..]
                            .iter()
                            .map(|f| match f.taken {
                                Taken::Definite(i) => self.def[i].id,
                                Taken::Unknown(j) => self.unk[j].id,
                            })
                            .collect();
                        deepest = Deepest {
                            linearized,
                            definite,
                            state,
                            recent,
                            blocked: None,
                            dead_end: None,
                        };
                    }
                }
                cursor = Cursor::Entry(self.next[self.head]);
                continue;
            }
            // A dead end, or a pair already explored: undo, and try the next candidate.
            match taken {
                Taken::Definite(i) => self.untake_definite(i),
                Taken::Unknown(j) => self.untake_unknown(j),
            }
        }
    }
}

/// Whether `ops` (one register's write-check operations) are linearizable from `start`.
/// `budget` bounds the search nodes (None: unbounded).
pub fn search(start: State, ops: &[LinOp], budget: Option<u64>) -> SearchResult {
    Search::new(ops).run(start, budget)
}

/// The operations of a window of `ops`: those invoked by `to`, less (when the window starts
/// at `from`) the definite ones that completed before `from`, which the window's free start
/// state absorbs. Operations pending at either edge are relaxed: those invoked before `from`
/// may have taken effect before it or in the window, those completing after `to` are cut.
/// Each window is a relaxation of any window that contains it, so a violation in a window is
/// a violation of the whole history.
pub fn window(ops: &[LinOp], from: Option<u64>, to: u64) -> Vec<LinOp> {
    let mut out = Vec::new();
    for &op in ops {
        if op.invoke > to {
            continue;
        }
        if let (Some(from), Some(complete)) = (from, op.complete)
            && complete < from
        {
            continue;
        }
        let cut = op.complete.is_some_and(|c| c > to) || from.is_some_and(|f| op.invoke < f);
        if cut {
            out.extend(op.relaxed());
        } else {
            out.push(op);
        }
    }
    out
}

/// The smallest failing window found by [`smallest_window`].
#[derive(Clone, Debug)]
pub struct Window {
    /// None: from the run's start, in the known initial state; else from then, in any state.
    pub from: Option<u64>,
    pub to: u64,
    /// The window's state at its start.
    pub start: State,
    /// The window's operations (those pending at its edges relaxed).
    pub ops: Vec<LinOp>,
    /// The definite operations the violation needs (ids).
    pub essential: Vec<u64>,
    /// Whether no essential operation can be relaxed (false: out of time).
    pub minimal: bool,
    /// Where the search of the minimised window got stuck.
    pub deepest: Deepest,
}

/// The smallest window of a non-linearizable sub-history `ops` (from `initial`) that is still
/// non-linearizable: the shortest failing prefix, then the latest start from which it fails
/// in any state, then the fewest operations that must keep their outcomes (delta debugging,
/// relaxing chunks of operations to Unknown while the violation stays). Each search has at
/// most `nodes` nodes (a search that gives up counts as passing, which only makes the window
/// larger); past `time`, the last step stops where it is.
pub fn smallest_window(initial: State, ops: &[LinOp], nodes: u64, time: Duration) -> Window {
    let started = Instant::now();
    let fails = |start: State, ops: &[LinOp]| {
        matches!(
            search(start, ops, Some(nodes)).verdict,
            Verdict::Violation(_)
        )
    };

    // 1. The shortest failing prefix, cut just after a completion.
    let mut ends: Vec<u64> = ops.iter().filter_map(|op| op.complete).collect();
    ends.sort_unstable();
    ends.dedup();
    let (mut lo, mut hi) = (0, ends.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(initial, &window(ops, None, ends[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let to = ends.get(hi).copied().unwrap_or(u64::MAX);

    // 2. The latest start from which it fails in any state.
    let mut starts: Vec<u64> = window(ops, None, to)
        .iter()
        .filter(|op| op.complete.is_some())
        .map(|op| op.invoke)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let (mut from, mut start) = (None, initial);
    if let Some(&first) = starts.first()
        && fails(State::ANY, &window(ops, Some(first), to))
    {
        let (mut lo, mut hi) = (0, starts.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fails(State::ANY, &window(ops, Some(starts[mid]), to)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        from = Some(starts[lo]);
        start = State::ANY;
    }
    let base = window(ops, from, to);

    // 3. The fewest definite operations that keep it failing.
    let definite: Vec<usize> = (0..base.len())
        .filter(|&k| base[k].complete.is_some())
        .collect();
    let mut relaxed = vec![false; base.len()];
    let trial = |relaxed: &[bool]| -> Vec<LinOp> {
        base.iter()
            .zip(relaxed)
            .filter_map(|(op, &r)| if r { op.relaxed() } else { Some(*op) })
            .collect()
    };
    let mut minimal = true;
    let mut chunk = definite.len().div_ceil(2).max(1);
    'shrink: while !definite.is_empty() {
        for part in definite.chunks(chunk) {
            if started.elapsed() > time {
                minimal = false;
                break 'shrink;
            }
            let kept = part.iter().filter(|&&k| !relaxed[k]).count();
            if kept == 0 {
                continue;
            }
            let mut attempt = relaxed.clone();
            for &k in part {
                attempt[k] = true;
            }
            if fails(start, &trial(&attempt)) {
                relaxed = attempt;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let deepest = match search(start, &trial(&relaxed), Some(nodes)).verdict {
        Verdict::Violation(deepest) => deepest,
        // Cannot happen (the last accepted trial failed); fall back to the unshrunk window.
        _ => {
            relaxed = vec![false; base.len()];
            match search(start, &base, None).verdict {
                Verdict::Violation(deepest) => deepest,
                _ => Deepest {
                    linearized: 0,
                    definite: definite.len(),
                    state: start,
                    recent: Vec::new(),
                    blocked: None,
                    dead_end: None,
                },
            }
        }
    };
    let essential = definite
        .iter()
        .filter(|&&k| !relaxed[k])
        .map(|&k| base[k].id)
        .collect();
    Window {
        from,
        to,
        start,
        ops: base,
        essential,
        minimal,
        deepest,
    }
}
