//! The etcd v3 calls cluster mode makes, each bounded in time: a request
//! that etcd's quorum does not answer within [`REQUEST_TIMEOUT`] is an
//! error, never a wait (a Mount must answer within Docker's timeout, the
//! fencing watchdog must see a lost quorum in time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};

use super::records::{self, OwnerRecord, ReplicaRecord};

/// The longest one etcd request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd did not answer within {0:?} (no quorum reachable)")]
    Timeout(Duration),
    #[error("etcd: {0}")]
    Client(#[from] etcd_client::Error),
    #[error("etcd: the lease expired")]
    LeaseExpired,
    #[error("cluster state: {0}")]
    Local(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, EtcdError>;

async fn bounded<T>(
    fut: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(EtcdError::Timeout(REQUEST_TIMEOUT)),
    }
}

/// A record with the revision it was read at (for compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub record: T,
    pub mod_revision: i64,
}

/// An etcd client (cheap to clone: the clones share one connection
/// pool, which [`Etcd::reconnect`] replaces for all).
#[derive(Clone)]
pub struct Etcd {
    client: Arc<Mutex<Client>>,
    endpoints: Arc<Vec<String>>,
}

impl Etcd {
    /// A client for `endpoints`; connects lazily, so an unreachable etcd
    /// does not stop the daemon from starting.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd> {
        let client = Self::fresh(endpoints).await?;
        Ok(Etcd {
            client: Arc::new(Mutex::new(client)),
            endpoints: Arc::new(endpoints.to_vec()),
        })
    }

    async fn fresh(endpoints: &[String]) -> Result<Client> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT);
        bounded(Client::connect(endpoints, Some(options))).await
    }

    fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the connection pool with a fresh one: after a partition,
    /// a pool whose connections all failed may not come back on its own,
    /// and one may keep routing to a member that went away.
    pub async fn reconnect(&self) {
        match Self::fresh(&self.endpoints).await {
            Ok(fresh) => *self.client.lock().unwrap_or_else(|e| e.into_inner()) = fresh,
            Err(e) => tracing::warn!(error = %e, "cannot reconnect to etcd"),
        }
    }

    /// One request, tried again once on a fresh pool when it fails.
    async fn call<T, Fut>(&self, request: impl Fn(Client) -> Fut) -> Result<T>
    where
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match bounded(request(self.client())).await {
            Err(EtcdError::Client(_) | EtcdError::Timeout(_)) => {
                self.reconnect().await;
                bounded(request(self.client())).await
            }
            other => other,
        }
    }

    /// A new lease of `ttl` seconds with this node's alive key on it.
    pub async fn grant(&self, node: &str, ttl: u64) -> Result<i64> {
        let mut c = self.client();
        let lease = bounded(c.lease_grant(ttl as i64, None)).await?.id();
        let put = PutOptions::new().with_lease(lease);
        let alive = records::now().to_string();
        bounded(c.put(records::alive_key(node), alive, Some(put))).await?;
        Ok(lease)
    }

    /// One keep-alive of `lease`: `Ok` once etcd confirmed it.
    pub async fn keep_alive(&self, lease: i64) -> Result<()> {
        let mut c = self.client();
        let answer = async {
            let (mut keeper, mut stream) = bounded(c.lease_keep_alive(lease)).await?;
            bounded(keeper.keep_alive()).await?;
            bounded(stream.message()).await
        };
        let answer = async {
            match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
                Ok(r) => r,
                Err(_) => Err(EtcdError::Timeout(REQUEST_TIMEOUT)),
            }
        };
        match answer.await {
            Ok(Some(r)) if r.ttl() > 0 => Ok(()),
            Ok(_) => Err(EtcdError::LeaseExpired),
            // An expired lease is also answered "not found" (as a gRPC
            // status, or as the client's keep-alive error text).
            Err(EtcdError::Client(etcd_client::Error::GRpcStatus(s)))
                if s.code() == tonic::Code::NotFound =>
            {
                Err(EtcdError::LeaseExpired)
            }
            Err(EtcdError::Client(etcd_client::Error::LeaseKeepAliveError(m)))
                if m.contains("not found") =>
            {
                Err(EtcdError::LeaseExpired)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back (a clean stop: the node is not alive anymore).
    pub async fn revoke(&self, lease: i64) -> Result<()> {
        let mut c = self.client();
        bounded(c.lease_revoke(lease)).await?;
        Ok(())
    }

    /// True while `node`'s lease lives.
    pub async fn alive(&self, node: &str) -> Result<bool> {
        let key = records::alive_key(node);
        let r = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(!r.kvs().is_empty())
    }

    /// The owner record of `volume` (`None`: never owned, or unreadable).
    pub async fn owner(&self, volume: &str) -> Result<Option<Versioned<OwnerRecord>>> {
        let key = records::owner_key(volume);
        let r = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(r.kvs().first().and_then(|kv| {
            Some(Versioned {
                record: records::parse(kv.value())?,
                mod_revision: kv.mod_revision(),
            })
        }))
    }

    /// Every owner record, by volume.
    pub async fn owners(&self) -> Result<Vec<(String, OwnerRecord)>> {
        let prefix = records::owner_prefix();
        let r = self.prefix(&prefix).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                let volume = kv.key_str().ok()?.strip_prefix(&prefix)?.to_string();
                Some((volume, records::parse(kv.value())?))
            })
            .collect())
    }

    /// Writes `record` as `volume`'s owner if the record is still the one
    /// read at `seen` (`None`: still absent) and, when `dead` names a node,
    /// that node's lease has expired. `Ok(false)`: someone else changed it
    /// first.
    pub async fn swap_owner(
        &self,
        volume: &str,
        seen: Option<i64>,
        dead: Option<&str>,
        record: &OwnerRecord,
    ) -> Result<bool> {
        let key = records::owner_key(volume);
        let mut when = vec![match seen {
            Some(rev) => Compare::mod_revision(key.clone(), CompareOp::Equal, rev),
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        }];
        if let Some(node) = dead {
            when.push(Compare::version(
                records::alive_key(node),
                CompareOp::Equal,
                0,
            ));
        }
        let value = serde_json::to_vec(record).expect("a record serializes");
        let txn = Txn::new()
            .when(when)
            .and_then(vec![TxnOp::put(key, value, None)]);
        let r = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(r.succeeded())
    }

    /// Records the newest snapshot of `volume` this node holds.
    pub async fn put_replica(&self, volume: &str, node: &str, r: &ReplicaRecord) -> Result<()> {
        let key = records::replica_key(volume, node);
        let value = serde_json::to_vec(r).expect("a record serializes");
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })
        .await?;
        Ok(())
    }

    /// Every node's newest snapshot of `volume`, by node.
    pub async fn replicas(&self, volume: &str) -> Result<Vec<(String, ReplicaRecord)>> {
        let prefix = records::replica_prefix(volume);
        let r = self.prefix(&prefix).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                let node = kv.key_str().ok()?.strip_prefix(&prefix)?.to_string();
                Some((node, records::parse(kv.value())?))
            })
            .collect())
    }

    async fn prefix(&self, prefix: &str) -> Result<etcd_client::GetResponse> {
        self.call(|mut c| {
            let prefix = prefix.to_string();
            async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await
    }
}
