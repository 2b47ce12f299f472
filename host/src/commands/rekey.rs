//! `faceauth rekey`: every stored template re-sealed with the current key.

use faceauth_core::store::DatabaseConfig;

pub async fn rekey(database: DatabaseConfig) -> anyhow::Result<()> {
    let store = database.connect().await?;
    anyhow::ensure!(store.seals_templates(), "no template key configured: nothing to seal with");
    let rewritten = store.rekey().await?;
    println!("{rewritten} templates re-sealed with the current key");
    Ok(())
}
