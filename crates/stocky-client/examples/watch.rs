//! Prints every event of a hub or edge as one JSON line on stdout, resuming across
//! disconnects and restarts without gaps or duplicates.
//!
//! ```text
//! cargo run -p stocky-client --example watch -- --url ws://HOST:PORT/ws --token TOKEN
//!     [--last-event-id N [--epoch E]] [--device-id D] [--email E --password P]
//! ```
//!
//! Everything that is not an event (connects, replays, full refreshes, disconnects) goes
//! to stderr, so stdout is exactly the event stream.

use std::io::Write;

use stocky_client::{Client, Start, SubscribeOptions, Update};

fn usage() -> ! {
    eprintln!(
        "usage: watch --url ws://HOST:PORT/ws (--token TOKEN | --email E --password P) \
         [--last-event-id N [--epoch E]] [--device-id D]"
    );
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut token, mut email, mut password) = (None, None, None, None);
    let (mut last, mut epoch, mut device) = (None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => url = Some(value()),
            "--token" => token = Some(value()),
            "--email" => email = Some(value()),
            "--password" => password = Some(value()),
            "--last-event-id" => last = Some(value().parse::<u64>().unwrap_or_else(|_| usage())),
            "--epoch" => epoch = Some(value()),
            "--device-id" => device = Some(value()),
            _ => usage(),
        }
    }
    let client = match Client::new(&url.unwrap_or_else(|| usage())) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    };
    let client = match (token, email, password) {
        (Some(token), _, _) => client.with_token(token),
        (None, Some(email), Some(password)) => {
            if let Err(e) = client.login(&email, &password).await {
                eprintln!("login failed: {e}");
                std::process::exit(1)
            }
            client
        }
        _ => usage(),
    };
    let start = match last {
        Some(last_event_id) => Start::After {
            last_event_id,
            epoch,
        },
        None => Start::Now,
    };
    let mut options = SubscribeOptions::new(start);
    options.device_id = device;
    let mut live = client.subscribe(options);
    let stdout = std::io::stdout();
    while let Some(update) = live.next().await {
        match update {
            Ok(Update::Event(event)) => {
                let line = serde_json::to_string(&event).expect("an event serialises");
                let mut out = stdout.lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return; // stdout closed
                }
            }
            Ok(Update::Connected(auth)) => {
                eprintln!(
                    "connected as {} ({}), head {}",
                    auth.user_id, auth.role, auth.last_event_id
                )
            }
            Ok(Update::Synced { last_event_id, .. }) => eprintln!("in sync at {last_event_id}"),
            Ok(Update::FullRefresh(refresh)) => eprintln!(
                "full refresh ({}): {} products as of {}",
                refresh.reason,
                refresh.stock.len(),
                refresh.last_event_id
            ),
            Ok(Update::Disconnected {
                reason, retry_in, ..
            }) => {
                eprintln!("disconnected: {reason}; retrying in {retry_in:?}")
            }
            Ok(other) => eprintln!("{other:?}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        }
    }
}
