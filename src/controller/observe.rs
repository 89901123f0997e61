//! Observe: one probe round of the voters, the pods and the StatefulSet from the informer caches,
//! and — only while the membership may differ from the spec — the joining servers' answers and
//! the committed membership, gathered into one plain [`Observation`] for `decide`.
//!
//! Everything the decision reads is read here, in one place, in one round: decisions are made
//! from this round's answers, never from a mix of rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::memory::{CredentialsStatus, Memory, recorded_membership};
use super::{Context, cached, lost_node::node_loss, scale};
use crate::api::annotations::{REPLACE_MEMBER, RESTART_MEMBER};
use crate::api::{MembershipStatus, Phase, ZooKeeperEnsemble};
use crate::build::names::{self, CLIENT_PORT};
use crate::decide::lost_node::{self, NodeLoss};
use crate::decide::node;
use crate::decide::restart::{PodFacts, RestartPolicy, pod_is_ready};
use crate::decide::roll::PodRevision;
use crate::decide::{Observed, ScaleView, SpecOutcome};
use crate::quorum::probe::Voter;
use crate::quorum::reconfig::Login;
use crate::quorum::rule::ComputedStatus;
use crate::quorum::{self, Myid};

/// The label the StatefulSet controller puts on each pod: the revision it was created from.
const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// What one reconcile observed.
pub struct Observation {
    pub now: Timestamp,
    /// The memory this round started from, with the status rule's memory moved on.
    pub memory: Memory,
    /// The phase shown before this round.
    pub previous_phase: Option<Phase>,
    /// The status rule's verdict on this round's probes of the voters.
    pub computed: ComputedStatus,
    /// `status.membership` as last recorded.
    pub recorded_membership: Option<MembershipStatus>,
    pub stateful_set: Option<Arc<StatefulSet>>,
    /// This reconcile wrote the StatefulSet: the revision in the cache may be one the operator
    /// did not write (a hand edit just put back), so no pod is rolled toward it this round.
    pub stateful_set_written: bool,
    /// The credentials as the apply step configured them (None: nothing was applied).
    pub credentials: Option<CredentialsStatus>,
    /// The voters' pods' facts, by pod name.
    pub pods: BTreeMap<String, PodFacts>,
    /// Every server's pod's revision and uid (voters and the servers beyond them), by pod name.
    pub revisions: BTreeMap<String, PodRevision>,
    pub scale: ScaleView,
    /// The serving servers the membership is read and changed through, and how to log in.
    pub membership_access: MembershipAccess,
    pub restart_policy: RestartPolicy,
    /// The ensemble's request to restart one member (`annotations::RESTART_MEMBER`).
    pub restart_request: Option<String>,
    /// Servers on nodes that are not Ready (or waiting for a volume on one), by myid.
    pub node_losses: BTreeMap<Myid, NodeLoss>,
    pub lost_node_policy: lost_node::Policy,
    /// The administrator's confirmation of a lost node (`annotations::REPLACE_MEMBER`).
    pub replace_request: Option<String>,
    /// How long until a voter is to be probed again (zero: next round); `None` when no voter
    /// has an address.
    pub next_probe_in: Option<std::time::Duration>,
}

impl Observation {
    /// The revision a roll may replace pods with: the StatefulSet's update revision, once the
    /// StatefulSet controller has seen its latest spec and only if this reconcile did not just
    /// write it. A revision from a hand-edited template is thus never rolled out: the edit is
    /// put back first, and the next round sees the revision of what the operator wrote.
    fn update_revision(&self) -> Option<&str> {
        if self.stateful_set_written {
            return None;
        }
        let sts = self.stateful_set.as_ref()?;
        let status = sts.status.as_ref()?;
        let seen = status.observed_generation >= sts.metadata.generation;
        seen.then_some(status.update_revision.as_deref()?)
    }

    /// The facts the decision reads.
    pub fn facts<'a>(&'a self, spec: &'a SpecOutcome) -> Observed<'a> {
        Observed {
            now: self.now,
            spec,
            computed: &self.computed,
            pods: &self.pods,
            revisions: &self.revisions,
            update_revision: self.update_revision(),
            restart_policy: &self.restart_policy,
            last_restart_at: self.memory.rule.last_restart_at(),
            scale: &self.scale,
            restart_request: self.restart_request.as_deref(),
            node_losses: &self.node_losses,
            lost_node_policy: &self.lost_node_policy,
            replace_request: self.replace_request.as_deref(),
        }
    }
}

/// The server with `myid`, with the IP of its pod, and the pod.
pub fn server(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    myid: Myid,
) -> (Voter, Option<Arc<Pod>>) {
    let namespace = ensemble.namespace().unwrap_or_default();
    let pod_name = names::pod(ensemble, myid.ordinal());
    let pod = ctx
        .stores
        .pods
        .get(&ObjectRef::new(&pod_name).within(&namespace));
    let ip = pod
        .as_ref()
        .and_then(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse().ok());
    let voter = Voter {
        myid,
        pod: pod_name,
        ip,
        pod_version: pod.as_ref().and_then(|p| p.resource_version()),
        admin_tls: pod.as_deref().is_some_and(admin_tls),
    };
    (voter, pod)
}

/// The pods of the StatefulSet's servers (as many as its replicas), those that exist, by name
/// as the probe round finds them: a scan of every pod in the cache would cost each reconcile
/// the whole cluster's pods.
pub fn server_pods(ensemble: &ZooKeeperEnsemble, ctx: &Context) -> Vec<Arc<Pod>> {
    let servers = scale::stateful_set_replicas(&ctx.stores, ensemble);
    Myid::up_to(servers.unwrap_or(0))
        .filter_map(|myid| server(ensemble, ctx, myid).1)
        .collect()
}

/// Whether the pod's server started with an AdminServer that takes only TLS clients with a
/// certificate of the ensemble's CA: its template says so ([`names::ADMIN_TLS_ANNOTATION`]).
/// Not its quorum TLS stage: a pod of an operator from before runs the same stage with a plain
/// HTTP AdminServer until the roll replaces it.
fn admin_tls(pod: &Pod) -> bool {
    pod.annotations()
        .get(names::ADMIN_TLS_ANNOTATION)
        .is_some_and(|value| value == "true")
}

/// Whether the pod's server runs SASL client authentication ([`names::CLIENT_SASL_ANNOTATION`]).
fn client_sasl(pod: &Pod) -> bool {
    pod.annotations()
        .contains_key(names::CLIENT_SASL_ANNOTATION)
}

/// The servers to read and change the membership through (client addresses), and whether
/// they take the operator's SASL login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipAccess {
    pub addresses: Vec<SocketAddr>,
    pub sasl: bool,
}

impl MembershipAccess {
    /// The servers of `serving` (client address, runs SASL) to use, and how to log in. One
    /// session logs in one way: a server with SASL authentication may refuse a session without
    /// it (when enforced), and a server without a login configuration cannot answer a SASL
    /// exchange. While a roll switches SASL on or off both kinds serve: the kind the spec asks
    /// for (`wanted`) is used when one serves, else the other.
    fn choose(serving: &[(SocketAddr, bool)], wanted: bool) -> Self {
        let others_only = !serving.is_empty() && serving.iter().all(|&(_, sasl)| sasl != wanted);
        let sasl = wanted != others_only;
        let addresses = serving
            .iter()
            .filter(|&&(_, s)| s == sasl)
            .map(|&(address, _)| address)
            .collect();
        MembershipAccess { addresses, sasl }
    }

    /// The operator's login to these servers, with the superuser's `password`.
    pub fn login<'a>(&self, password: &'a str) -> Login<'a> {
        Login {
            password,
            sasl: self.sasl,
        }
    }
}

/// The voters: the committed ones recorded, else (before the operator first read them)
/// servers 1..=replicas.
fn voter_ids(ensemble: &ZooKeeperEnsemble, recorded: Option<&MembershipStatus>) -> BTreeSet<Myid> {
    scale::recorded_voters(recorded).unwrap_or_else(|| {
        Myid::up_to(u32::try_from(ensemble.spec.replicas).unwrap_or(0)).collect()
    })
}

/// Observes the ensemble. `password` is the superuser's, when the spec was applied: only then
/// may the membership be read (and changed).
pub async fn observe(
    ensemble: &ZooKeeperEnsemble,
    ctx: &Context,
    password: Option<&str>,
) -> Observation {
    let recorded = recorded_membership(ensemble, ctx);
    let voter_ids = voter_ids(ensemble, recorded.as_ref());
    let voters: Vec<(Voter, Option<Arc<Pod>>)> = voter_ids
        .iter()
        .map(|&myid| server(ensemble, ctx, myid))
        .collect();
    let mut memory = ctx.memory_of(ensemble);
    let previous_phase = memory.rule.phase();
    let voter_list: Vec<Voter> = voters.iter().map(|(v, _)| v.clone()).collect();
    let prober = super::tls::prober(ensemble, ctx);
    let probing = Instant::now();
    super::progress::at("probing the voters");
    let computed =
        quorum::observe(&prober, &voter_list, &mut memory.rule, &ctx.settings.rule).await;
    ctx.metrics.probe_round(probing.elapsed());
    let next_probe_in = ctx.prober.due_in(&voter_list);
    let now = Timestamp::now();

    let namespace = ensemble.namespace().unwrap_or_default();
    let stateful_set = ctx.stores.stateful_set(ensemble);
    let mut pods = BTreeMap::new();
    for (voter, pod) in &voters {
        let Some(pod) = pod else { continue };
        let node = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.node_name.as_deref())
            .and_then(|node| ctx.stores.nodes.get(&ObjectRef::new(node)));
        let facts = PodFacts {
            node_not_ready: node.and_then(|node| node::not_ready(&node)),
            ..PodFacts::from_pod(pod)
        };
        pods.insert(voter.pod.clone(), facts);
    }

    let mut scale = ScaleView {
        desired: u32::try_from(ensemble.spec.replicas).unwrap_or(0),
        recorded: scale::recorded_voters(recorded.as_ref()),
        servers: stateful_set
            .as_ref()
            .and_then(|sts| sts.spec.as_ref()?.replicas)
            .and_then(|r| u32::try_from(r).ok()),
        committed: None,
        refusing_empty: BTreeMap::new(),
        states: computed.answered.clone(),
    };
    // Any server, voter or joining, whose pod refuses to start as a voter on an empty volume.
    let highest = scale
        .servers
        .unwrap_or(0)
        .max(voter_ids.last().map_or(0, |&m| u32::from(m)));
    let mut revisions = BTreeMap::new();
    let mut node_losses = BTreeMap::new();
    for myid in Myid::up_to(highest) {
        let (server, Some(pod)) = server(ensemble, ctx, myid) else {
            continue;
        };
        // Without the StatefulSet the pod's claims are not known, and a member whose volume
        // lives only on a lost node must not be taken for one whose volume can follow it.
        if let Some(sts) = &stateful_set {
            let claims = cached::claim_names(sts, &server.pod);
            super::progress::at("reading a member's volume claims for a lost node");
            if let Some(loss) = node_loss(ctx, &namespace, &pod, &claims).await {
                node_losses.insert(myid, loss);
            }
        }
        if PodFacts::from_pod(&pod).refuses_empty_voter {
            scale.refusing_empty.insert(myid, server.pod.clone());
        }
        let revision = PodRevision {
            myid,
            revision: pod.labels().get(POD_REVISION_LABEL).cloned(),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            ready: pod_is_ready(&pod),
            uid: pod.uid(),
        };
        revisions.insert(server.pod, revision);
    }
    // A roll reads the membership too: its leader step is a voter change, and only the
    // committed membership tells a server that holds no vote (replaced first) from one the
    // status has not caught up with. A steady ensemble still costs no session.
    let update_revision = stateful_set
        .as_ref()
        .and_then(|sts| sts.status.as_ref()?.update_revision.clone());
    let rolling = revisions
        .values()
        .any(|p| p.revision.is_some() && p.revision != update_revision);
    let has_quorum = matches!(computed.summary.phase, Phase::Active | Phase::Degraded);
    let mut membership_access = MembershipAccess::default();
    if let Some(password) = password
        && has_quorum
        && (scale.needs_reading() || rolling || !node_losses.is_empty())
    {
        // The servers beyond the voters (joining, or leaving the StatefulSet) answer too.
        let others: Vec<Voter> = Myid::up_to(scale.servers.unwrap_or(0))
            .filter(|m| !voter_ids.contains(m))
            .map(|m| server(ensemble, ctx, m).0)
            .collect();
        super::progress::at("probing the servers beyond the voters");
        let round = prober.probe(&others).await;
        for observation in &round.observations {
            scale.states.insert(observation.myid, observation.state());
        }
        let serving: Vec<(SocketAddr, bool)> = scale
            .states
            .iter()
            .filter(|(_, state)| state.is_serving())
            .filter_map(|(&m, _)| {
                let (voter, pod) = server(ensemble, ctx, m);
                let ip: IpAddr = voter.ip?;
                let sasl = pod.as_deref().is_some_and(client_sasl);
                Some((SocketAddr::new(ip, CLIENT_PORT as u16), sasl))
            })
            .collect();
        let wanted = ensemble.spec.client_authentication.runs_sasl();
        membership_access = MembershipAccess::choose(&serving, wanted);
        super::progress::at("reading the committed membership");
        scale.committed = Some(
            ctx.reconfigurer
                .committed(
                    &membership_access.addresses,
                    membership_access.login(password),
                )
                .await
                .map_err(|error| error.to_string()),
        );
    }
    Observation {
        now,
        memory,
        previous_phase,
        computed,
        recorded_membership: recorded,
        stateful_set,
        stateful_set_written: false,
        credentials: None,
        pods,
        revisions,
        scale,
        membership_access,
        restart_policy: RestartPolicy::from(&ensemble.spec.failed_member_restart),
        restart_request: ensemble.annotations().get(RESTART_MEMBER).cloned(),
        node_losses,
        lost_node_policy: lost_node::Policy::from(&ensemble.spec.lost_node),
        replace_request: ensemble.annotations().get(REPLACE_MEMBER).cloned(),
        next_probe_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pod
    }

    /// An operator upgraded under a running ensemble: its pods run quorum TLS, from a
    /// template without a TLS-only AdminServer. Asking them in HTTPS would show every member
    /// unreachable and stall the roll that brings the new AdminServer.
    #[test]
    fn a_pod_from_before_is_asked_in_plain_http_whatever_its_stage() {
        assert!(!admin_tls(&pod(&[("zooherd.dev/quorum-tls", "on")])));
        assert!(admin_tls(&pod(&[
            ("zooherd.dev/quorum-tls", "on"),
            ("zooherd.dev/admin-tls", "true"),
        ])));
        assert!(!admin_tls(&pod(&[])));
    }

    /// A roll that switches SASL on: the servers already started with it are asked (the spec
    /// may enforce it); until one of them serves, the old ones, without SASL.
    #[test]
    fn the_membership_is_read_through_servers_that_take_the_wanted_login() {
        let a: SocketAddr = "10.0.0.1:2181".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2181".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:2181".parse().unwrap();
        let access = |addresses, sasl| MembershipAccess { addresses, sasl };
        let mixed = [(a, true), (b, false), (c, false)];
        assert_eq!(
            MembershipAccess::choose(&mixed, true),
            access(vec![a], true)
        );
        assert_eq!(
            MembershipAccess::choose(&mixed, false),
            access(vec![b, c], false)
        );
        let old = [(b, false), (c, false)];
        assert_eq!(
            MembershipAccess::choose(&old, true),
            access(vec![b, c], false)
        );
        let new = [(a, true)];
        assert_eq!(MembershipAccess::choose(&new, false), access(vec![a], true));
        assert_eq!(MembershipAccess::choose(&[], true), access(vec![], true));
    }
}
