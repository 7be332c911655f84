//! Store-level tests: the writer's guarantees without any network in the way.

use std::sync::{Arc, Mutex};

use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};

use super::*;

#[derive(Default)]
struct Recorder(Mutex<Vec<CommittedEvent>>);

impl EventSink for Recorder {
    fn publish(&self, event: CommittedEvent) -> usize {
        self.0.lock().unwrap().push(event);
        1
    }
}

fn origin(op_id: Option<&str>) -> Origin {
    Origin {
        tenant: DEFAULT_TENANT.into(),
        site: DEFAULT_SITE.into(),
        connection: 0,
        client_id: "test".into(),
        op_id: op_id.map(str::to_owned),
    }
}

fn cmd(op: StockOp, lines: &[(i64, i64)]) -> StockCommand {
    StockCommand {
        op,
        lines: lines
            .iter()
            .map(|&(product_id, amount)| StockLine { product_id, amount })
            .collect(),
    }
}

fn open(dir: &Path, sink: Arc<Recorder>) -> (SqliteStore, WriterGuard, Vec<StreamHead>) {
    SqliteStore::open(&dir.join("stocky.db"), StoreOptions::default(), sink, None).unwrap()
}

#[tokio::test]
async fn concurrent_subtracts_never_oversell_and_ids_are_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(dir.path(), sink.clone());
    store
        .submit(cmd(StockOp::Update, &[(1, 50)]), origin(None))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .submit(cmd(StockOp::Subtract, &[(1, 1)]), origin(None))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(SubmitError::Rejected(Rejection::InsufficientStock {
                available: 0,
                requested: 1,
                ..
            })) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 50);
    let row = store
        .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.on_hand, 0);
    assert_eq!(
        store
            .ledger_sum(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap(),
        0
    );
    let ids: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=51).collect::<Vec<_>>());
    drop(store);
    writer.join();
}

#[tokio::test]
async fn state_ids_and_epoch_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer, heads) = open(dir.path(), Arc::default());
    let epoch = heads[0].epoch.clone();
    store
        .submit(cmd(StockOp::Add, &[(7, 5), (8, 2)]), origin(None))
        .await
        .unwrap();
    store
        .submit(cmd(StockOp::Subtract, &[(7, 1)]), origin(None))
        .await
        .unwrap();
    drop(store);
    writer.join();

    let sink = Arc::new(Recorder::default());
    let (store, writer, heads) = open(dir.path(), sink.clone());
    assert_eq!((heads[0].epoch.clone(), heads[0].head), (epoch, 2));
    let applied = store
        .submit(cmd(StockOp::Add, &[(7, 1)]), origin(None))
        .await
        .unwrap();
    assert_eq!(applied.id(), 3);
    let snap = store.snapshot(DEFAULT_TENANT, DEFAULT_SITE).await.unwrap();
    assert_eq!(snap.head, 3);
    let levels: Vec<(i64, i64)> = snap
        .stock
        .iter()
        .map(|r| (r.product_id, r.on_hand))
        .collect();
    assert_eq!(levels, vec![(7, 5), (8, 2)]);
    let page = store.replay(DEFAULT_TENANT, 1, 100).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(page.covers(0));
    drop(store);
    writer.join();
}

#[tokio::test]
async fn refused_commands_change_nothing_and_retries_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let (store, writer, _) = open(dir.path(), sink.clone());
    store
        .submit(cmd(StockOp::Update, &[(1, 10)]), origin(None))
        .await
        .unwrap();
    // The second line fails, so the first must not apply either.
    let err = store
        .submit(cmd(StockOp::Subtract, &[(1, 5), (2, 1)]), origin(None))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SubmitError::Rejected(Rejection::UnknownProduct { product_id: 2 })
    ));
    assert_eq!(
        store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap()
            .unwrap()
            .on_hand,
        10
    );

    let first = store
        .submit(cmd(StockOp::Subtract, &[(1, 3)]), origin(Some("op-1")))
        .await
        .unwrap();
    let again = store
        .submit(cmd(StockOp::Subtract, &[(1, 3)]), origin(Some("op-1")))
        .await
        .unwrap();
    assert!(matches!(first, Applied::New { id: 2, .. }));
    assert!(matches!(again, Applied::Duplicate { id: 2, .. }));
    assert_eq!(
        store
            .stock_of(DEFAULT_TENANT, DEFAULT_SITE, 1)
            .await
            .unwrap()
            .unwrap()
            .on_hand,
        7
    );
    assert_eq!(sink.0.lock().unwrap().len(), 2);
    drop(store);
    writer.join();
}

#[tokio::test]
async fn retention_prunes_the_log_and_replay_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        event_retention: 3,
        ..StoreOptions::default()
    };
    let (store, writer, _) = SqliteStore::open(
        &dir.path().join("s.db"),
        options,
        Arc::new(Recorder::default()),
        None,
    )
    .unwrap();
    for _ in 0..6 {
        store
            .submit(cmd(StockOp::Add, &[(1, 1)]), origin(None))
            .await
            .unwrap();
    }
    store.prune_soon();
    // The prune runs on the writer; a later command proves it has run.
    store
        .submit(cmd(StockOp::Add, &[(1, 1)]), origin(None))
        .await
        .unwrap();
    let page = store.replay(DEFAULT_TENANT, 0, 100).await.unwrap();
    assert_eq!(page.head, 7);
    assert_eq!(page.oldest, 4);
    assert!(!page.covers(0));
    assert!(page.covers(page.oldest - 1));
    assert!(!page.covers(8));
    drop(store);
    writer.join();
}
