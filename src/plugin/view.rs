//! What `kubectl zooherd status` and `events` show, as pure functions of what was read: the
//! ensemble (its status is what the operator computed), its pods and its Events, and the time.
//!
//! Nothing here asks a server: the plugin shows the operator's view, the one its decisions are
//! made from, and needs no network path to the pods. [`StatusView`] is that view as plain data;
//! it is what `-o json` prints, and [`render_status`] lays it out for a terminal.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;

use super::table::{Style, Table, paint};
use crate::api::{MemberState, MembershipStatus, Phase, QuorumTlsStatus, ZooKeeperEnsemble};

/// How many Events `status` shows (the newest); `events` shows them all.
pub const STATUS_EVENTS: usize = 10;

/// How close to its expiry a certificate is shown as a warning: when the chart's alerts
/// (ZooKeeperQuorumCertificateExpiring, ZooKeeperClientCaExpiring) fire.
const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

/// An ensemble as `kubectl zooherd status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub name: String,
    pub namespace: String,
    /// PENDING, ACTIVE, DEGRADED or DOWN; None before the operator wrote a status.
    pub phase: Option<Phase>,
    pub ready: Option<String>,
    pub quorum: Option<i32>,
    pub fault_tolerance: Option<i32>,
    pub leader: Option<String>,
    pub zxid: Option<String>,
    pub epoch: Option<i64>,
    pub connect_string: Option<String>,
    pub membership: Option<MembershipStatus>,
    /// Quorum TLS: its stage, when the servers' certificate and the CA expire.
    pub quorum_tls: Option<QuorumTlsStatus>,
    /// When the clients' CA (`x509ClientCaSecret`) expires (RFC 3339), if one is named.
    pub client_ca_not_after: Option<String>,
    /// `spec.paused`: the operator changes nothing.
    pub paused: bool,
    pub members: Vec<MemberRow>,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
}

/// One voter: the operator's view of it, and its pod's.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRow {
    pub pod: String,
    /// The node its pod runs on.
    pub node: Option<String>,
    pub myid: i32,
    pub state: MemberState,
    /// Why it does not serve, when it does not.
    pub reason: Option<String>,
    pub zxid: Option<String>,
    /// Transactions behind the leader's zxid, from the same probe round (see [`lag`]); None
    /// unless it serves and both zxids are known.
    pub lag: Option<u64>,
    /// Request latency min/avg/max in ms since the server started.
    pub latency: Option<String>,
    pub connections: Option<i64>,
    /// When it entered its state (RFC 3339).
    pub since: Option<String>,
    /// Container restarts by the kubelet (as `kubectl get pods` counts them).
    pub restarts: i32,
    /// Restarts by the operator: its pod evicted because the member had failed.
    pub operator_restarts: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// When it last happened (RFC 3339).
    pub last_seen: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub count: i32,
    pub message: String,
}

/// The zxid's epoch (high 32 bits) and counter (low 32 bits), from its hex form.
fn zxid_parts(hex: &str) -> Option<(u64, u64)> {
    let zxid = u64::from_str_radix(hex.trim().trim_start_matches("0x"), 16).ok()?;
    Some((zxid >> 32, zxid & 0xffff_ffff))
}

/// How many transactions a serving `member` is behind `leader` (both hex zxids of one round).
///
/// A member serves only once it has synced with the leader, so all it can lack are the
/// transactions of the leader's epoch: all of them while it has processed none yet (its last
/// zxid is still of an older epoch, as right after an election), else those after its own.
pub fn lag(leader: Option<&str>, member: Option<&str>) -> Option<u64> {
    let (leader_epoch, leader_counter) = zxid_parts(leader?)?;
    let (epoch, counter) = zxid_parts(member?)?;
    Some(match epoch.cmp(&leader_epoch) {
        std::cmp::Ordering::Less => leader_counter,
        // Probes of one round are concurrent: a follower may answer a little after the
        // leader, and be ahead of the leader's answer. That is no lag.
        std::cmp::Ordering::Equal => leader_counter.saturating_sub(counter),
        std::cmp::Ordering::Greater => 0,
    })
}

fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The Events, oldest first (the newest at the bottom, as `kubectl describe` shows them).
pub fn event_rows(events: &[Event]) -> Vec<EventRow> {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| event_time(e));
    events
        .into_iter()
        .map(|e| EventRow {
            last_seen: event_time(e).map(|t| t.to_string()),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
            message: e.message.clone().unwrap_or_default(),
        })
        .collect()
}

fn condition_row(c: &Condition) -> ConditionRow {
    ConditionRow {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.0.to_string(),
    }
}

/// The restarts of a pod's containers, summed as `kubectl get pods` does.
fn container_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |containers| {
            containers.iter().map(|c| c.restart_count).sum()
        })
}

/// Builds the view from the ensemble, its pods and its Events (the newest [`STATUS_EVENTS`]).
pub fn status_view(ensemble: &ZooKeeperEnsemble, pods: &[Pod], events: &[Event]) -> StatusView {
    let status = ensemble.status.clone().unwrap_or_default();
    let pod = |name: &str| pods.iter().find(|p| p.name_any() == name);
    let members = status
        .members
        .iter()
        .map(|m| {
            let pod = pod(&m.pod);
            MemberRow {
                pod: m.pod.clone(),
                node: pod.and_then(|p| p.spec.as_ref()?.node_name.clone()),
                myid: m.myid,
                state: m.state,
                reason: m.reason.clone(),
                zxid: m.zxid.clone(),
                lag: if m.state.is_serving() {
                    lag(status.zxid.as_deref(), m.zxid.as_deref())
                } else {
                    None
                },
                latency: m.latency.clone(),
                connections: m.connections,
                since: m.since.as_ref().map(|t| t.0.to_string()),
                restarts: pod.map_or(0, container_restarts),
                operator_restarts: m.restarts,
            }
        })
        .collect();
    let mut events = event_rows(events);
    let skip = events.len().saturating_sub(STATUS_EVENTS);
    events.drain(..skip);
    StatusView {
        name: ensemble.name_any(),
        namespace: ensemble.namespace().unwrap_or_default(),
        phase: status.phase,
        ready: status.ready,
        quorum: status.quorum,
        fault_tolerance: status.fault_tolerance,
        leader: status.leader,
        zxid: status.zxid,
        epoch: status.epoch,
        connect_string: status.connect_string,
        membership: status.membership,
        quorum_tls: status.quorum_tls,
        client_ca_not_after: status.client_ca_not_after.map(|t| t.0.to_string()),
        paused: ensemble.spec.paused,
        members,
        conditions: status.conditions.iter().map(condition_row).collect(),
        events,
    }
}

/// A duration the way `kubectl get` prints ages: `38s`, `5m12s`, `42m`, `3h12m`, `2d4h`.
pub fn age(from: &str, now: Timestamp) -> String {
    let Ok(from) = from.parse::<Timestamp>() else {
        return "-".into();
    };
    let s = now.as_second().saturating_sub(from.as_second()).max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 60 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if h < 1 {
        format!("{m}m")
    } else if d < 1 {
        format!("{h}h{}m", m % 60)
    } else {
        format!("{d}d{}h", h % 24)
    }
}

fn phase_style(phase: Option<Phase>) -> Style {
    match phase {
        Some(Phase::Active) => Style::Good,
        Some(Phase::Degraded) => Style::Warn,
        Some(Phase::Down) => Style::Bad,
        Some(Phase::Pending) | None => Style::Plain,
    }
}

fn state_style(state: MemberState) -> Style {
    match state {
        MemberState::Leader | MemberState::Standalone => Style::Strong,
        s if s.is_serving() => Style::Good,
        _ => Style::Bad,
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The headline: phase, voters serving, quorum, tolerance.
fn headline(view: &StatusView, colour: bool) -> String {
    let phase = view.phase.map_or("no status yet", Phase::as_str);
    let mut line = format!(
        "{} in {}: {}",
        view.name,
        view.namespace,
        paint(phase, phase_style(view.phase), colour)
    );
    if let Some(ready) = &view.ready {
        line.push_str(&format!(", {ready} voters serving"));
    }
    if let Some(quorum) = view.quorum {
        line.push_str(&format!(", quorum {quorum}"));
    }
    if let Some(tolerance) = view.fault_tolerance {
        line.push_str(&format!(", {tolerance} more may fail"));
    }
    if view.paused {
        line.push_str(&format!(
            " ({})",
            paint("paused: the operator changes nothing", Style::Warn, colour)
        ));
    }
    line
}

/// When each certificate the status names expires: the servers' (quorum TLS) and its CA, and
/// the clients' CA; None when there is none.
fn certificates(view: &StatusView, now: Timestamp, colour: bool) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(tls) = &view.quorum_tls
        && let Some(servers) = &tls.certificate_not_after
    {
        let mut part = format!(
            "servers' (quorum TLS {}) {}",
            tls.stage,
            expiry(servers.0, now, colour)
        );
        if let Some(ca) = &tls.ca_not_after {
            part.push_str(&format!(", its CA {}", expiry(ca.0, now, colour)));
        }
        parts.push(part);
    }
    if let Some(Ok(at)) = view.client_ca_not_after.as_deref().map(str::parse) {
        parts.push(format!("clients' CA {}", expiry(at, now, colour)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// "until <date> (in <time left>)", a warning within [`EXPIRY_WARNING`]; "expired <date>",
/// an error, once past.
fn expiry(at: Timestamp, now: Timestamp, colour: bool) -> String {
    let date = at.strftime("%Y-%m-%d");
    if at <= now {
        return paint(&format!("expired {date}"), Style::Bad, colour);
    }
    let style = if at.duration_since(now) < EXPIRY_WARNING {
        Style::Warn
    } else {
        Style::Plain
    };
    let left = age(&now.to_string(), at);
    paint(&format!("until {date} (in {left})"), style, colour)
}

/// `kubectl zooherd status` for a terminal, with ANSI colours when `colour`.
pub fn render_status(view: &StatusView, now: Timestamp, colour: bool) -> String {
    let mut out = headline(view, colour) + "\n";
    if let Some(leader) = &view.leader {
        out.push_str(&format!(
            "leader {leader}, zxid {}, epoch {}\n",
            or_dash(view.zxid.as_deref()),
            or_dash(view.epoch)
        ));
    }
    if let Some(m) = &view.membership {
        let voters: Vec<String> = m.voters.iter().map(i32::to_string).collect();
        out.push_str(&format!(
            "membership: voters {} (version {})",
            voters.join(", "),
            m.version
        ));
        if let Some(scaling) = &m.scaling {
            out.push_str(&format!("; {scaling}"));
        }
        out.push('\n');
    }
    if let Some(connect) = &view.connect_string {
        out.push_str(&format!("connect: {connect}\n"));
    }
    if let Some(certificates) = certificates(view, now, colour) {
        out.push_str(&format!("certificates: {certificates}\n"));
    }

    let mut members = Table::new(&[
        "POD", "NODE", "MYID", "STATE", "ZXID", "LAG", "LATENCY", "CONNS", "SINCE", "RESTARTS",
        "EVICTED",
    ]);
    for m in &view.members {
        members.row(vec![
            (m.pod.clone(), Style::Plain),
            (or_dash(m.node.as_deref()), Style::Plain),
            (m.myid.to_string(), Style::Plain),
            (m.state.to_string(), state_style(m.state)),
            (or_dash(m.zxid.as_deref()), Style::Plain),
            (or_dash(m.lag), Style::Plain),
            (or_dash(m.latency.as_deref()), Style::Plain),
            (or_dash(m.connections), Style::Plain),
            (
                m.since.as_deref().map_or("-".into(), |s| age(s, now)),
                Style::Plain,
            ),
            (m.restarts.to_string(), Style::Plain),
            (m.operator_restarts.to_string(), Style::Plain),
        ]);
    }
    out.push('\n');
    out.push_str(&members.render(colour));
    for m in view.members.iter().filter(|m| m.reason.is_some()) {
        let reason = m.reason.as_deref().unwrap_or_default();
        out.push_str(&format!(
            "{}: {}: {reason}\n",
            m.pod,
            paint(m.state.as_str(), Style::Bad, colour)
        ));
    }

    if !view.conditions.is_empty() {
        let mut conditions = Table::new(&["CONDITION", "STATUS", "REASON", "MESSAGE"]);
        for c in &view.conditions {
            conditions.row(vec![
                (c.type_.clone(), Style::Plain),
                (c.status.clone(), Style::Plain),
                (c.reason.clone(), Style::Plain),
                (c.message.clone(), Style::Plain),
            ]);
        }
        out.push('\n');
        out.push_str(&conditions.render(colour));
    }
    out.push('\n');
    out.push_str(&render_events(&view.events, now, colour));
    out
}

/// The Events as a table (`kubectl zooherd events`, and the end of `status`).
pub fn render_events(events: &[EventRow], now: Timestamp, colour: bool) -> String {
    if events.is_empty() {
        return "No Events.\n".into();
    }
    let mut table = Table::new(&["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]);
    for e in events {
        let style = if e.type_ == "Warning" {
            Style::Warn
        } else {
            Style::Plain
        };
        table.row(vec![
            (
                e.last_seen.as_deref().map_or("-".into(), |s| age(s, now)),
                Style::Plain,
            ),
            (e.type_.clone(), style),
            (e.reason.clone(), Style::Plain),
            (e.count.to_string(), Style::Plain),
            (e.message.clone(), Style::Plain),
        ]);
    }
    table.render(colour)
}

#[cfg(test)]
mod tests;
