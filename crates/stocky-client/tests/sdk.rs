//! The SDK against a real hub on port 0: REST, resume, gap → request_sync, full_refresh,
//! token refresh, backoff on a refused connection, close-code handling, own echoes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use stocky_client::api::{NewApiKey, NewUser};
use stocky_client::{Backoff, Client, ClientError, Start, SubscribeOptions, Subscription, Update};
use stocky_core::auth::Role;
use stocky_core::stock::{StockCommand, StockLine, StockOp};
use stocky_test_support::{TestHub, WAIT};

/// The next update that is not a `Connected`/`Disconnected` notice.
async fn next(sub: &mut Subscription) -> Result<Update> {
    loop {
        let update = tokio::time::timeout(WAIT, sub.next())
            .await
            .context("timed out waiting for an update")?
            .context("subscription ended")??;
        match update {
            Update::Connected(_) | Update::Disconnected { .. } => continue,
            other => return Ok(other),
        }
    }
}

/// Event ids until (and including) `last`, skipping `Synced` notices.
async fn event_ids_until(sub: &mut Subscription, last: u64) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        match next(sub).await? {
            Update::Event(e) => ids.push(e.id),
            Update::Synced { .. } => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    Ok(ids)
}

fn fast(start: Start) -> SubscribeOptions {
    let mut options = SubscribeOptions::new(start);
    options.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    options
}

#[tokio::test]
async fn rest_calls_are_typed() -> Result<()> {
    let hub = TestHub::start().await?;
    let sdk = hub.sdk();
    let set = sdk.update_stock(&[(1, 10), (2, 5)]).await?;
    assert!(set.success && set.id == 1 && !set.duplicate);
    assert_eq!(set.data.as_ref().unwrap()[1].stock, 5);
    let sub = sdk.subtract_stock(&[(1, 3)]).await?;
    assert_eq!(sub.data.unwrap()[0].quantity, Some(3));
    let refused = sdk.subtract_stock(&[(1, 100)]).await.unwrap_err();
    assert_eq!(refused.code(), Some("insufficient_stock"));
    assert_eq!(refused.status(), Some(409));
    let listing = sdk.stock().await?;
    assert_eq!((listing.count, listing.last_event_id), (2, 2));
    assert_eq!(sdk.stock_of(1).await?.unwrap().stock, 7);
    assert!(sdk.stock_of(99).await?.is_none());
    assert_eq!(sdk.status().await?.last_event_id, 2);
    // idempotency over REST
    let command = StockCommand {
        op: StockOp::Add,
        lines: vec![StockLine {
            product_id: 1,
            amount: 1,
        }],
    };
    let first = sdk.stock_command(&command, Some("k-1")).await?;
    let again = sdk.stock_command(&command, Some("k-1")).await?;
    assert!(again.duplicate && again.id == first.id);
    // login / refresh through the SDK
    sdk.create_user(&NewUser {
        email: "c@x.test".into(),
        password: "a long password".into(),
        role: Role::Cashier,
        site_id: None,
        modules: None,
    })
    .await?;
    let cashier = Client::new(&hub.http)?;
    let grant = cashier.login("c@x.test", "a long password").await?;
    assert_eq!(grant.user.role, Role::Cashier);
    cashier.refresh().await?;
    let denied = cashier.add_stock(&[(1, 1)]).await.unwrap_err();
    assert_eq!(denied.code(), Some("forbidden"));
    // documents
    let saved = sdk
        .post_documents(
            "shop",
            "notes",
            &serde_json::json!({"data": [{"id": "n1", "text": "hola"}]}),
        )
        .await?;
    assert_eq!(saved["created"], 1, "{saved}");
    assert!(sdk.document("shop", "notes", "n1").await?.is_some());
    assert!(sdk.document("shop", "notes", "zz").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn resumes_from_its_position_without_gaps_or_duplicates() -> Result<()> {
    let hub = TestHub::start().await?;
    let sdk = hub.sdk();
    let mut sub = sdk.subscribe(fast(Start::After {
        last_event_id: 0,
        epoch: None,
    }));
    for i in 1..=3 {
        sdk.update_stock(&[(i, 10)]).await?;
    }
    assert_eq!(event_ids_until(&mut sub, 3).await?, [1, 2, 3]);
    let (last, epoch) = sub.position();
    assert_eq!(last, Some(3));
    sub.close().await;
    for i in 4..=6 {
        sdk.add_stock(&[(1, i)]).await?;
    }
    let mut sub = sdk.subscribe(fast(Start::After {
        last_event_id: 3,
        epoch,
    }));
    assert_eq!(event_ids_until(&mut sub, 6).await?, [4, 5, 6]);
    sdk.add_stock(&[(2, 1)]).await?;
    assert_eq!(event_ids_until(&mut sub, 7).await?, [7]);
    Ok(())
}

#[tokio::test]
async fn a_gap_is_filled_with_request_sync() -> Result<()> {
    let hub = TestHub::start().await?;
    let sdk = hub.sdk();
    for i in 1..=5 {
        sdk.update_stock(&[(i, 1)]).await?;
    }
    let epoch = sdk.status().await?.epoch;
    // Connect without the position: auth_success shows head 5 while we are at 2, so the
    // subscription must ask for 3..=5 itself.
    let mut options = fast(Start::After {
        last_event_id: 2,
        epoch: Some(epoch),
    });
    options.resume_on_connect = false;
    let mut sub = sdk.subscribe(options);
    assert_eq!(event_ids_until(&mut sub, 5).await?, [3, 4, 5]);
    assert!(matches!(
        next(&mut sub).await?,
        Update::Synced {
            last_event_id: 5,
            ..
        }
    ));
    sdk.update_stock(&[(9, 9)]).await?;
    assert_eq!(event_ids_until(&mut sub, 6).await?, [6]);
    Ok(())
}

#[tokio::test]
async fn full_refresh_hands_over_the_snapshot_then_continues() -> Result<()> {
    let hub = TestHub::start().await?;
    let sdk = hub.sdk();
    sdk.update_stock(&[(1, 10), (2, 20)]).await?;
    let mut sub = sdk.subscribe(fast(Start::After {
        last_event_id: 1,
        epoch: Some("not-this-epoch".into()),
    }));
    match next(&mut sub).await? {
        Update::FullRefresh(refresh) => {
            assert_eq!(refresh.last_event_id, 1);
            assert_eq!(refresh.stock.len(), 2);
        }
        other => bail!("expected full_refresh, got {other:?}"),
    }
    assert!(matches!(
        next(&mut sub).await?,
        Update::Synced {
            last_event_id: 1,
            ..
        }
    ));
    sdk.add_stock(&[(1, 1)]).await?;
    assert_eq!(event_ids_until(&mut sub, 2).await?, [2]);
    Ok(())
}

#[tokio::test]
async fn own_commands_come_back_applied_not_as_events() -> Result<()> {
    let hub = TestHub::start().await?;
    let sdk = hub.sdk();
    let mut mine = sdk.subscribe(fast(Start::Now));
    let mut other = sdk.subscribe(fast(Start::Now).device("other"));
    // both are live once they report Connected
    for sub in [&mut mine, &mut other] {
        loop {
            if let Update::Connected(_) = sub.next().await.context("ended")?? {
                break;
            }
        }
    }
    let command = StockCommand {
        op: StockOp::Update,
        lines: vec![StockLine {
            product_id: 4,
            amount: 40,
        }],
    };
    let op = mine.send(&command, None).await?;
    match next(&mut mine).await? {
        Update::Applied(ack) => assert_eq!((ack.id, ack.op_id.as_deref()), (1, Some(op.as_str()))),
        other => bail!("expected the ack, got {other:?}"),
    }
    match next(&mut other).await? {
        Update::Event(e) => {
            assert_eq!((e.id, e.op_id.as_deref()), (1, Some(op.as_str())));
            assert_eq!(e.stock_changes().unwrap()[0].stock, 40);
        }
        other => bail!("expected the event, got {other:?}"),
    }
    // a refused command is reported to its sender only
    let bad = StockCommand {
        op: StockOp::Subtract,
        lines: vec![StockLine {
            product_id: 4,
            amount: 1000,
        }],
    };
    mine.send(&bad, Some("bad-1".into())).await?;
    match next(&mut mine).await? {
        Update::Rejected(e) => assert_eq!(
            (e.code.as_str(), e.op_id.as_deref()),
            ("insufficient_stock", Some("bad-1"))
        ),
        other => bail!("expected the rejection, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_nothing_is_missed() -> Result<()> {
    let hub = TestHub::start_with(|c| c.server.access_ttl = Duration::from_secs(3)).await?;
    hub.sdk()
        .create_user(&NewUser {
            email: "m@x.test".into(),
            password: "a long password".into(),
            role: Role::Manager,
            site_id: None,
            modules: None,
        })
        .await?;
    let sdk = Client::new(&hub.http)?;
    sdk.login("m@x.test", "a long password").await?;
    let first_token = sdk.token().await?;
    let mut sub = sdk.subscribe(fast(Start::After {
        last_event_id: 0,
        epoch: None,
    }));
    sdk.update_stock(&[(1, 1)]).await?;
    assert_eq!(event_ids_until(&mut sub, 1).await?, [1]);
    // Past the first token's lifetime: the subscription refreshed (and reconnected on
    // 4001), and REST calls go on with the new token.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    sdk.update_stock(&[(1, 2)]).await?;
    sdk.update_stock(&[(1, 3)]).await?;
    assert_eq!(event_ids_until(&mut sub, 3).await?, [2, 3]);
    assert_ne!(sdk.token().await?, first_token, "the token was refreshed");
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_backoff_then_given_up() -> Result<()> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let sdk = Client::new(&format!("ws://127.0.0.1:{port}/ws"))?.with_token("t");
    let mut options = fast(Start::Now);
    options.max_attempts = Some(3);
    let mut sub = sdk.subscribe(options);
    let mut waits = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, sub.next())
            .await?
            .context("ended")?
        {
            Ok(Update::Disconnected { retry_in, code, .. }) => {
                assert_eq!(code, None);
                waits.push(retry_in);
            }
            Ok(other) => bail!("unexpected {other:?}"),
            Err(ClientError::Ended(reason)) => {
                assert!(reason.contains("gave up after 3 attempts"), "{reason}");
                break;
            }
            Err(e) => bail!("unexpected error {e}"),
        }
    }
    assert_eq!(waits.len(), 3);
    // each wait is jittered within [ceiling/2, ceiling], ceilings 50, 100, 200 ms
    for (wait, ceiling) in waits.iter().zip([50u64, 100, 200]) {
        let ceiling = Duration::from_millis(ceiling);
        assert!(*wait <= ceiling && *wait >= ceiling / 2, "{waits:?}");
    }
    Ok(())
}

#[tokio::test]
async fn close_codes_decide_between_reconnecting_and_giving_up() -> Result<()> {
    let mut hub = TestHub::start().await?;
    let sdk = hub.sdk();
    // 1008 with a credential that cannot be refreshed: give up, no retry loop.
    let mut bad = hub.sdk_with("not-a-token").subscribe(fast(Start::Now));
    match tokio::time::timeout(WAIT, bad.next())
        .await?
        .context("ended")?
    {
        Err(ClientError::Ended(reason)) => {
            assert!(reason.contains("invalid credentials"), "{reason}")
        }
        other => bail!("expected to give up, got {other:?}"),
    }
    // 4002: a second connection of the same key and device replaces the first, which
    // must not reconnect (they would replace each other for ever).
    let key = sdk
        .create_api_key(&NewApiKey {
            name: "pos".into(),
            role: Role::Cashier,
            site_id: None,
            modules: None,
        })
        .await?;
    let key = key["key"].as_str().context("a key")?.to_owned();
    let keyed = hub.sdk_with(&key);
    let mut first = keyed.subscribe(fast(Start::Now).device("till-1"));
    assert!(matches!(
        first.next().await.context("ended")??,
        Update::Connected(_)
    ));
    let mut second = keyed.subscribe(fast(Start::Now).device("till-1"));
    assert!(matches!(
        second.next().await.context("ended")??,
        Update::Connected(_)
    ));
    match tokio::time::timeout(WAIT, first.next())
        .await?
        .context("ended")?
    {
        Err(ClientError::Ended(reason)) => assert!(reason.contains("replaced"), "{reason}"),
        other => bail!("expected to give up after 4002, got {other:?}"),
    }
    // 1012 (restart): reconnect and resume.
    let mut live = sdk.subscribe(fast(Start::After {
        last_event_id: 0,
        epoch: None,
    }));
    sdk.update_stock(&[(1, 1)]).await?;
    assert_eq!(event_ids_until(&mut live, 1).await?, [1]);
    hub.restart_with(|_| {}).await?;
    let mut saw_restart = false;
    loop {
        match tokio::time::timeout(WAIT, live.next())
            .await?
            .context("ended")??
        {
            Update::Disconnected {
                code: Some(1012), ..
            } => saw_restart = true,
            Update::Connected(_) if saw_restart => break,
            _ => {}
        }
    }
    sdk.update_stock(&[(1, 2)]).await?;
    assert_eq!(event_ids_until(&mut live, 2).await?, [2]);
    Ok(())
}
