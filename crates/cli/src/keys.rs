//! `keys create|list|revoke|rotate-data-key`.

use anyhow::Result;
use downshift_store::{DataDir, Role, create_api_key};
use serde_json::json;

use crate::output::{rfc3339, table};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// May call the /v1 API only.
    Agent,
    /// May read call metadata, scrubbed data and reports; never raw payloads.
    Analyst,
    /// Everything, including raw payloads and key management.
    Admin,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key; the secret is printed once and never stored.
    Create {
        /// What the key may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Agent identity for the calls made with this key (stored as a pseudonym).
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List API keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by id, prefix or name; a running gateway stops accepting it within 2 s.
    Revoke {
        /// Key id, the prefix shown by `keys list`, or the key's name.
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a new data-encryption key the one new records are written with. Old records stay
    /// readable with the old keys; a running gateway switches within a few seconds.
    RotateDataKey {
        #[arg(long)]
        json: bool,
    },
}

pub fn keys(c: KeysCommand, data: &DataDir) -> Result<()> {
    match c {
        KeysCommand::Create {
            role,
            name,
            agent,
            json,
        } => {
            let (keyring, _) = data.keyring(true)?;
            let store = data.open_store()?;
            let role = match role {
                RoleArg::Agent => Role::Agent,
                RoleArg::Analyst => Role::Analyst,
                RoleArg::Admin => Role::Admin,
            };
            let (secret, rec) = create_api_key(&*store, &keyring, role, &name, agent.as_deref())?;
            if json {
                println!(
                    "{}",
                    json!({"id": rec.id, "name": rec.name, "role": rec.role, "key": secret, "prefix": rec.prefix})
                );
            } else {
                println!("created {} key '{}' ({})", role.as_str(), rec.name, rec.id);
                println!("key (shown once): {secret}");
            }
        }
        KeysCommand::List { json } => {
            let store = data.open_existing_store()?;
            let keys = store.list_api_keys()?;
            if json {
                for k in &keys {
                    println!("{}", serde_json::to_string(k)?);
                }
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            k.role.as_str().to_owned(),
                            format!("{}…", k.prefix),
                            rfc3339(k.created_ms),
                            k.revoked_ms.map(rfc3339).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED"],
                    &rows,
                );
            }
        }
        KeysCommand::Revoke { key, json } => {
            let store = data.open_store()?;
            let rec = store.revoke_api_key(&key)?;
            if json {
                println!("{}", serde_json::to_string(&rec)?);
            } else {
                println!("revoked key '{}' ({})", rec.name, rec.id);
            }
        }
        KeysCommand::RotateDataKey { json } => {
            let (mut keyring, _) = data.keyring(false)?;
            let id = keyring.rotate()?;
            let info = keyring.info();
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                println!(
                    "new records are now encrypted with data key {id}; {} keys kept for reading",
                    info.data_keys.len()
                );
            }
        }
    }
    Ok(())
}
