//! `stocky admin …`: tenants, sites, users and API keys, offline against a data directory
//! (the same store code the hub uses; safe while a hub runs on it), or with `--url` through
//! a running hub's REST API (the SDK), in the credential's tenant. Offline it works on an existing
//! database only — a hub creates it on its first start — so a mistyped `--data-dir` is an
//! error, not a new empty database. Secrets are printed once — generated passwords and API
//! keys — and stored only hashed.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use stocky_core::accounts::{check_password, email_key, parse_email};
use stocky_core::api::UserUpdate;
use stocky_core::auth::Role;
use stocky_core::documents::check_name;
use stocky_core::DEFAULT_TENANT;
use stocky_server::auth::{
    digest, generate_password, hash_password_off_thread, random_token, API_KEY_PREFIX,
};
use stocky_store::{Account, Listed, Location, UserChange, UserChanged};

use crate::backup::open_offline;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a tenant (with its `default` site and event stream).
    TenantCreate {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    TenantList,
    /// Create a site (shop, sede) in a tenant.
    SiteCreate {
        id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's sites.
    SiteList {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Register a device (register, edge) at a site.
    DeviceCreate {
        id: String,
        #[arg(long)]
        site: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's devices.
    DeviceList {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a user; prints a generated password unless `--password` is given.
    UserCreate {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        grant: Grant,
        #[arg(long, env = "STOCKY_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Give a user a new password and log out their sessions (a lost password, or a first
    /// start whose output was lost); prints a generated password unless `--password` is
    /// given.
    UserResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long, env = "STOCKY_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Change a user's role, home site or access by id (`user-list` shows ids); their
    /// sessions end, so they sign in again with the new grant.
    UserUpdate {
        id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        change: UserUpdateArgs,
    },
    /// List a tenant's users.
    UserList {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create an API key for a machine (POS, edge, integration); prints it once.
    KeyCreate {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// List a tenant's API keys (never the keys themselves).
    KeyList {
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Revoke an API key by id.
    KeyRevoke {
        id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// What a user or key is allowed.
#[derive(clap::Args)]
pub struct Grant {
    #[arg(long, default_value = "default")]
    tenant: String,
    /// owner, admin, manager or cashier.
    #[arg(long)]
    role: String,
    /// Home site [default: every site].
    #[arg(long)]
    site: Option<String>,
    /// Enabled modules, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    modules: Option<Vec<String>>,
}

impl Grant {
    fn account(&self) -> Result<Account> {
        let role =
            Role::parse(&self.role).context("--role must be owner, admin, manager or cashier")?;
        if let Some(site) = &self.site {
            check_name("site", site).map_err(|e| anyhow::anyhow!(e.0))?;
        }
        Ok(Account {
            id: stocky_server::random_id(),
            tenant: self.tenant.clone(),
            role,
            site: self.site.clone(),
            modules: self.modules.clone(),
        })
    }
}

/// What `user-update` changes (nothing it is not given).
#[derive(clap::Args)]
pub struct UserUpdateArgs {
    /// owner, admin, manager or cashier.
    #[arg(long)]
    role: Option<String>,
    /// New home site.
    #[arg(long, conflicts_with = "every_site")]
    site: Option<String>,
    /// Every site (no home site).
    #[arg(long)]
    every_site: bool,
    /// Refuse the user's sign-ins.
    #[arg(long, conflicts_with = "enable")]
    disable: bool,
    /// Let a disabled user sign in again.
    #[arg(long)]
    enable: bool,
}

impl UserUpdateArgs {
    fn change(&self) -> Result<UserUpdate> {
        let role = match &self.role {
            Some(role) => {
                Some(Role::parse(role).context("--role must be owner, admin, manager or cashier")?)
            }
            None => None,
        };
        if let Some(site) = &self.site {
            check_name("site", site).map_err(|e| anyhow::anyhow!(e.0))?;
        }
        let change = UserUpdate {
            role,
            site_id: match (&self.site, self.every_site) {
                (Some(site), _) => Some(Some(site.clone())),
                (None, true) => Some(None),
                (None, false) => None,
            },
            modules: None,
            disabled: (self.disable || self.enable).then_some(self.disable),
        };
        if change == UserUpdate::default() {
            bail!("nothing to change: give --role, --site, --every-site, --disable or --enable");
        }
        Ok(change)
    }
}

/// The password given (checked), or a generated one; and whether it was generated (then
/// it must be printed).
fn new_password(given: Option<String>) -> Result<(String, bool)> {
    match given {
        Some(password) => {
            check_password(&password).map_err(|e| anyhow::anyhow!(e.0))?;
            Ok((password, false))
        }
        None => Ok((generate_password(), true)),
    }
}

fn print_updated(email: &str, role: Role, site: Option<&str>, disabled: bool) {
    println!(
        "updated user {email} ({}, site {}){}; their sessions are logged out",
        role.as_str(),
        site.unwrap_or("*"),
        if disabled { ", disabled" } else { "" }
    );
}

fn print_listed(rows: &[Listed]) {
    for r in rows {
        println!(
            "{}\t{}\t{}\tsite={}\tmodules={}{}",
            r.id,
            r.name,
            r.role.as_deref().unwrap_or("-"),
            r.site_id.as_deref().unwrap_or("*"),
            r.modules.as_ref().map_or("*".to_string(), |m| m.join(",")),
            if r.revoked { "\trevoked" } else { "" }
        );
    }
}

pub async fn run(location: &Location, command: AdminCommand) -> Result<()> {
    let (store, writer) = open_offline(location, false).await?;
    let result = execute(&store, command).await;
    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await?;
    result
}

async fn execute(store: &stocky_store::Store, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::TenantCreate { id, name } => {
            check_name("tenant", &id).map_err(|e| anyhow::anyhow!(e.0))?;
            let name = name.unwrap_or_else(|| id.clone());
            let tenant = id.clone();
            store
                .accounts(move |a| a.create_tenant(&tenant, &name, None))
                .await?;
            println!("created tenant {id} (with site \"default\")");
        }
        AdminCommand::TenantList => {
            for (id, name) in store.accounts(|a| a.list_tenants()).await? {
                println!("{id}\t{name}");
            }
        }
        AdminCommand::SiteCreate { id, tenant, name } => {
            check_name("site", &id).map_err(|e| anyhow::anyhow!(e.0))?;
            let name = name.unwrap_or_else(|| id.clone());
            let site = id.clone();
            store
                .accounts(move |a| a.create_site(&tenant, &site, &name))
                .await?;
            println!("created site {id}");
        }
        AdminCommand::SiteList { tenant } => {
            for (id, name) in store.accounts(move |a| a.list_sites(&tenant)).await? {
                println!("{id}\t{name}");
            }
        }
        AdminCommand::DeviceCreate {
            id,
            site,
            tenant,
            name,
        } => {
            check_name("device", &id).map_err(|e| anyhow::anyhow!(e.0))?;
            let name = name.unwrap_or_else(|| id.clone());
            let device = id.clone();
            store
                .accounts(move |a| a.create_device(&tenant, &device, &site, &name))
                .await?;
            println!("created device {id}");
        }
        AdminCommand::DeviceList { tenant } => {
            for (id, site, name) in store.accounts(move |a| a.list_devices(&tenant)).await? {
                println!("{id}\tsite={site}\t{name}");
            }
        }
        AdminCommand::UserCreate {
            email,
            grant,
            password,
        } => {
            let account = grant.account()?;
            let email = parse_email(&email).map_err(|e| anyhow::anyhow!("--email: {}", e.0))?;
            let (password, generated) = new_password(password)?;
            let hash = hash_password_off_thread(password.clone())
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let (created, login) = (account.clone(), email.clone());
            store
                .accounts(move |a| a.create_user(&created, &login, &hash))
                .await?;
            println!(
                "created user {email} ({}) id {}",
                account.role.as_str(),
                account.id
            );
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::UserResetPassword { email, password } => {
            let (password, generated) = new_password(password)?;
            let hash = hash_password_off_thread(password.clone())
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let email = email_key(&email);
            let login = email.clone();
            let Some(account) = store
                .accounts(move |a| a.reset_password(&login, &hash))
                .await?
            else {
                bail!("no user with email {email:?}");
            };
            println!(
                "reset the password of {email} ({}, tenant {}) id {}; their sessions are logged out",
                account.role.as_str(),
                account.tenant,
                account.id
            );
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::UserUpdate { id, tenant, change } => {
            let wanted = change.change()?;
            let change = UserChange {
                role: wanted.role,
                site: wanted.site_id,
                modules: wanted.modules,
                disabled: wanted.disabled,
            };
            let user = id.clone();
            // Offline is the operator: an owner's powers.
            match store
                .accounts(move |a| a.update_user(&tenant, &user, &change, true))
                .await?
            {
                UserChanged::Done { after, .. } => print_updated(
                    &after.email,
                    after.account.role,
                    after.account.site.as_deref(),
                    after.disabled,
                ),
                UserChanged::NotFound | UserChanged::OwnerOnly => {
                    bail!("no user {id} in that tenant")
                }
            }
        }
        AdminCommand::UserList { tenant } => {
            print_listed(&store.accounts(move |a| a.list_users(&tenant)).await?)
        }
        AdminCommand::KeyCreate { name, grant } => {
            let account = grant.account()?;
            let key = random_token(API_KEY_PREFIX);
            let (created, label, hash) = (account.clone(), name.clone(), digest(&key));
            store
                .accounts(move |a| a.create_api_key(&created, &label, &hash))
                .await?;
            println!(
                "created API key {name} ({}) id {}",
                account.role.as_str(),
                account.id
            );
            println!("key: {key}");
            println!("store it now: it is not shown again");
        }
        AdminCommand::KeyList { tenant } => {
            print_listed(&store.accounts(move |a| a.list_api_keys(&tenant)).await?)
        }
        AdminCommand::KeyRevoke { id, tenant } => {
            let key = id.clone();
            if !store
                .accounts(move |a| a.revoke_api_key(&tenant, &key))
                .await?
            {
                bail!("no active API key {id} in that tenant");
            }
            println!("revoked API key {id}");
        }
    }
    Ok(())
}

/// The same commands through a running hub's REST API, in the credential's tenant.
pub async fn run_remote(client: &stocky_client::Client, command: AdminCommand) -> Result<()> {
    use stocky_client::api::{NewApiKey, NewDevice, NewSite, NewUser};
    let own_tenant = |tenant: &str| {
        if tenant != DEFAULT_TENANT {
            bail!("with --url the tenant is the credential's; leave out --tenant");
        }
        Ok(())
    };
    let print_rows = |listing: serde_json::Value| {
        for row in listing["data"].as_array().into_iter().flatten() {
            println!("{row}");
        }
    };
    match command {
        AdminCommand::TenantCreate { .. } | AdminCommand::TenantList => {
            bail!("tenants are managed offline (stocky admin --data-dir …) or with POST /api/admin/tenants")
        }
        AdminCommand::UserResetPassword { .. } => {
            bail!("user-reset-password works offline only (it is the way back in when no login works)")
        }
        AdminCommand::SiteCreate { id, tenant, name } => {
            own_tenant(&tenant)?;
            client
                .create_site(&NewSite {
                    id: id.clone(),
                    name,
                })
                .await?;
            println!("created site {id}");
        }
        AdminCommand::SiteList { tenant } => {
            own_tenant(&tenant)?;
            print_rows(client.sites().await?)
        }
        AdminCommand::DeviceCreate {
            id,
            site,
            tenant,
            name,
        } => {
            own_tenant(&tenant)?;
            client
                .create_device(&NewDevice {
                    id: id.clone(),
                    site_id: site,
                    name,
                })
                .await?;
            println!("created device {id}");
        }
        AdminCommand::DeviceList { tenant } => {
            own_tenant(&tenant)?;
            print_rows(client.devices().await?)
        }
        AdminCommand::UserCreate {
            email,
            grant,
            password,
        } => {
            own_tenant(&grant.tenant)?;
            let account = grant.account()?;
            let (password, generated) = new_password(password)?;
            let created = client
                .create_user(&NewUser {
                    email: email.clone(),
                    password: password.clone(),
                    role: account.role,
                    site_id: account.site,
                    modules: account.modules,
                })
                .await?;
            println!(
                "created user {email} ({}) id {}",
                account.role.as_str(),
                created["userId"].as_str().unwrap_or("?")
            );
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::UserUpdate { id, tenant, change } => {
            own_tenant(&tenant)?;
            let after = client.update_user(&id, &change.change()?).await?;
            print_updated(
                &after.email,
                after.role,
                after.site_id.as_deref(),
                after.disabled,
            );
        }
        AdminCommand::UserList { tenant } => {
            own_tenant(&tenant)?;
            print_rows(client.users().await?)
        }
        AdminCommand::KeyCreate { name, grant } => {
            own_tenant(&grant.tenant)?;
            let account = grant.account()?;
            let created = client
                .create_api_key(&NewApiKey {
                    name: name.clone(),
                    role: account.role,
                    site_id: account.site,
                    modules: account.modules,
                })
                .await?;
            println!(
                "created API key {name} ({}) id {}",
                account.role.as_str(),
                created["id"].as_str().unwrap_or("?")
            );
            println!("key: {}", created["key"].as_str().unwrap_or("?"));
            println!("store it now: it is not shown again");
        }
        AdminCommand::KeyList { tenant } => {
            own_tenant(&tenant)?;
            print_rows(client.api_keys().await?)
        }
        AdminCommand::KeyRevoke { id, tenant } => {
            own_tenant(&tenant)?;
            client.revoke_api_key(&id).await?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}
