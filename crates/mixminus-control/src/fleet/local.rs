//! The in-process fleet of one node: the default.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    Fleet, FleetError, FleetFuture, Forward, ForwardHandler, ForwardReply, Load, NodeStatus,
    Placement, StoredConference,
};

/// One node on its own. It is never distributed, so the API answers every request itself
/// and nothing is stored or forwarded; its store is an in-memory map with the same
/// create-only and compare-and-set rules as the real ones (for embedders and tests).
#[derive(Debug)]
pub struct Local {
    node: String,
    load: Mutex<Load>,
    records: Mutex<HashMap<String, (StoredConference, u64)>>,
    revision: Mutex<u64>,
}

impl Local {
    /// A lone node called `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            load: Mutex::new(Load::default()),
            records: Mutex::new(HashMap::new()),
            revision: Mutex::new(0),
        }
    }

    fn next_revision(&self) -> u64 {
        let mut r = self.revision.lock().unwrap_or_else(|p| p.into_inner());
        *r += 1;
        *r
    }
}

impl Fleet for Local {
    fn node(&self) -> &str {
        &self.node
    }

    fn is_distributed(&self) -> bool {
        false
    }

    fn liveness(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn healthy(&self) -> bool {
        true
    }

    fn may_claim(&self) -> bool {
        false
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        let load = self.load.lock().unwrap_or_else(|p| p.into_inner()).clone();
        vec![NodeStatus::new(self.node.clone(), "local", load)]
    }

    fn report_load(&self, load: Load) {
        *self.load.lock().unwrap_or_else(|p| p.into_inner()) = load;
    }

    fn placements(&self) -> Vec<Placement> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.values().map(|(r, rev)| Placement::new(&r.account, &r.id, &r.owner, *rev)).collect()
    }

    fn create(&self, record: &StoredConference) -> FleetFuture<'_, u64> {
        let key = StoredConference::key(&record.account, &record.id);
        let result = {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            match records.get(&key) {
                Some((_, rev)) => Err(FleetError::Taken { revision: Some(*rev) }),
                None => {
                    let rev = self.next_revision();
                    records.insert(key, (record.clone(), rev));
                    Ok(rev)
                }
            }
        };
        Box::pin(async move { result })
    }

    fn update(&self, record: &StoredConference, revision: u64) -> FleetFuture<'_, u64> {
        let key = StoredConference::key(&record.account, &record.id);
        let result = {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            match records.get(&key) {
                Some((_, rev)) if *rev == revision => {
                    let rev = self.next_revision();
                    records.insert(key, (record.clone(), rev));
                    Ok(rev)
                }
                other => Err(FleetError::Taken { revision: other.map(|(_, r)| *r) }),
            }
        };
        Box::pin(async move { result })
    }

    fn load(&self, account: &str, id: &str) -> FleetFuture<'_, Option<(StoredConference, u64)>> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let found = records.get(&StoredConference::key(account, id)).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn remove(&self, account: &str, id: &str, revision: u64) -> FleetFuture<'_, ()> {
        let key = StoredConference::key(account, id);
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let result = match records.get(&key) {
            Some((_, rev)) if *rev == revision => {
                records.remove(&key);
                Ok(())
            }
            other => Err(FleetError::Taken { revision: other.map(|(_, r)| *r) }),
        };
        Box::pin(async move { result })
    }

    fn forward(&self, node: &str, _request: Forward) -> FleetFuture<'_, ForwardReply> {
        let node = node.to_owned();
        Box::pin(async move { Err(FleetError::NoSuchNode(node)) })
    }

    fn serve(&self, _handler: ForwardHandler) -> FleetFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn publish_event(&self, _account: &str, _id: &str, _event: &Value) -> FleetFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn subscribe_events(&self, _account: &str, id: &str) -> FleetFuture<'_, mpsc::Receiver<Value>> {
        let id = id.to_owned();
        Box::pin(async move { Err(FleetError::NoSuchNode(format!("owner of {id}"))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn create_only_once_and_compare_and_set() {
        let fleet = Local::new("n1");
        let record = StoredConference::new("n1", "acc", "c1", json!({}));
        let r1 = fleet.create(&record).await.unwrap();
        assert!(matches!(fleet.create(&record).await, Err(FleetError::Taken { .. })));
        let r2 = fleet.update(&record, r1).await.unwrap();
        assert!(matches!(fleet.update(&record, r1).await, Err(FleetError::Taken { .. })));
        assert_eq!(fleet.load("acc", "c1").await.unwrap().unwrap().1, r2);
        assert!(fleet.remove("acc", "c1", r1).await.is_err());
        fleet.remove("acc", "c1", r2).await.unwrap();
        assert!(fleet.load("acc", "c1").await.unwrap().is_none());
    }
}
