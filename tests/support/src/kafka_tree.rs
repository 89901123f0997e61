//! A data tree shaped like Kafka's, to back up and restore: brokers, topics with partitions,
//! config, a znode only a digest user may change, sequential and ephemeral znodes, data of
//! every size up to about 1 MB (ZooKeeper's default `jute.maxbuffer` is 1 MiB), and znodes
//! changed after their creation. [`read_tree`] reads what a restore must give back.

use std::collections::BTreeMap;

use zookeeper_client as zk;

/// The largest znode's data: below ZooKeeper's 1 MiB request limit with room for the path.
pub const LARGEST_DATA: usize = 1_000_000;

/// What a znode is, as compared before and after a restore.
#[derive(Debug, PartialEq, Eq)]
pub struct Znode {
    pub data: Vec<u8>,
    pub version: i32,
    pub czxid: i64,
    pub mzxid: i64,
    pub acl: String,
}

/// Writes the tree through `client`; returns the paths of its persistent znodes (the
/// ephemeral one goes with the session).
pub async fn write_tree(client: &zk::Client) -> Vec<String> {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut paths = Vec::new();
    // Returns the path created: a sequential znode's has its sequence number appended.
    let create = async |path: String, data: &[u8], mode: &zk::CreateOptions<'_>| {
        let (_, sequence) = client
            .create(&path, data, mode)
            .await
            .unwrap_or_else(|e| panic!("creating {path}: {e}"));
        if path.ends_with('_') {
            format!("{path}{sequence}")
        } else {
            path
        }
    };
    for path in [
        "/brokers",
        "/brokers/topics",
        "/brokers/ids",
        "/isr_change_notification",
    ] {
        paths.push(create(path.to_owned(), b"", &open).await);
    }
    paths.push(create("/config".to_owned(), b"{\"version\":1}", &open).await);
    for topic in 0..40 {
        let path = format!("/brokers/topics/topic-{topic}");
        let assignment =
            format!("{{\"version\":3,\"partitions\":{{\"0\":[1,2,3]}},\"topic\":{topic}}}");
        paths.push(create(path.clone(), assignment.as_bytes(), &open).await);
        paths.push(create(format!("{path}/partitions"), b"", &open).await);
        for partition in 0..5 {
            let size = (topic * 997 + partition * 131) % 4096;
            let data = vec![b'a' + (partition as u8); size];
            paths.push(create(format!("{path}/partitions/{partition}"), &data, &open).await);
        }
    }
    let sequential = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    for change in 0..10 {
        let data = format!("{{\"partitions\":[{{\"topic\":\"topic-{change}\"}}]}}");
        let path = "/isr_change_notification/isr_change_".to_owned();
        paths.push(create(path, data.as_bytes(), &sequential).await);
    }
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    create(
        "/brokers/ids/1".to_owned(),
        b"{\"host\":\"broker-1\"}",
        &ephemeral,
    )
    .await;
    paths.push(create("/large".to_owned(), &vec![7u8; LARGEST_DATA], &open).await);
    let guarded_acl = [
        zk::Acl::new(
            zk::Permission::ALL,
            zk::AuthId::new("digest", "kafka:0y9b4uTSW4r6QrXnh1ch4CJtLc4="),
        ),
        zk::Acl::new(zk::Permission::READ, zk::AuthId::new("world", "anyone")),
    ];
    let guarded = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&guarded_acl));
    paths.push(create("/config/users".to_owned(), b"SCRAM credentials", &guarded).await);
    for topic in 0..5 {
        let path = format!("/brokers/topics/topic-{topic}");
        client.set_data(&path, b"moved", None).await.unwrap();
        client.set_data(&path, b"moved again", None).await.unwrap();
    }
    paths
}

/// Reads one znode's data, version, zxids and ACL.
pub async fn read_znode(client: &zk::Client, path: &str) -> Znode {
    let (data, stat) = client
        .get_data(path)
        .await
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let (acl, _) = client
        .get_acl(path)
        .await
        .unwrap_or_else(|e| panic!("reading the ACL of {path}: {e}"));
    Znode {
        data,
        version: stat.version,
        czxid: stat.czxid,
        mzxid: stat.mzxid,
        acl: format!("{acl:?}"),
    }
}

/// Reads every znode of `paths`.
pub async fn read_tree(client: &zk::Client, paths: &[String]) -> BTreeMap<String, Znode> {
    let mut tree = BTreeMap::new();
    for path in paths {
        tree.insert(path.clone(), read_znode(client, path).await);
    }
    tree
}
