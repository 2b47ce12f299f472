//! The users' confusable skeletons (issue 22, item 12): stored with each user, in a
//! unique index, so that a look-alike of an enrolled name cannot be enrolled (one
//! indexed lookup, at a million users as at ten).

use sqlx::{AnyPool, Row};

use super::{StoreError, UserStore, bounded};

/// The name's confusable skeleton: UTS #39 `skeleton()` (section 4, "Confusable
/// Detection") of its NFKC form. Two usernames with one skeleton look alike (`alice`,
/// `аlice` with a Cyrillic `а`, `aIice` with a capital `I`); only the first enrolled
/// may exist. NFKC first: compatibility variants (full-width `ａｌｉｃｅ`, ligatures
/// `ﬁ`, superscripts, circled digits) fold to the plain letters they are drawn as,
/// beyond what the confusables table lists; a fold too many only refuses an
/// enrollment, never merges two accounts (authentication compares the exact name).
pub fn skeleton(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = name.nfkc().collect();
    unicode_security::skeleton(&folded).collect()
}

/// Gives the users enrolled before the skeleton column theirs, oldest first: the
/// first of a look-alike group keeps its skeleton, the others (enrolled when
/// nothing refused them) keep NULL and their accounts. Run at start-up, by every
/// replica (a row another replica filled meanwhile is skipped); after the first
/// run it finds only those NULL rows. A thousand users per transaction: a million
/// single-row commits would each wait for the disk.
pub(super) async fn fill_skeletons(pool: &AnyPool) -> Result<u64, StoreError> {
    const BATCH: i64 = 1000;
    let (mut after_at, mut after_name) = (i64::MIN, String::new());
    let mut filled = 0;
    loop {
        let rows = sqlx::query(
            "SELECT username, enrolled_at FROM users WHERE skeleton IS NULL \
             AND (enrolled_at > $1 OR (enrolled_at = $1 AND username > $2)) ORDER BY enrolled_at, username LIMIT $3",
        )
        .bind(after_at)
        .bind(&after_name)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        (after_at, after_name) = (last.try_get("enrolled_at")?, last.try_get("username")?);
        let names = rows.iter().map(|row| row.try_get("username")).collect::<Result<Vec<String>, _>>()?;
        // A look-alike enrolled by another replica meanwhile makes the batch fail
        // (a PostgreSQL transaction does not survive a failed statement): again,
        // and that name is skipped.
        let mut tries = 0;
        filled += loop {
            match fill_batch(pool, &names).await {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && tries < 3 => tries += 1,
                done => break done?,
            }
        };
    }
    if filled > 0 {
        tracing::info!(filled, "confusable skeletons stored for users enrolled before them");
    }
    Ok(filled)
}

/// Fills `names`' skeletons in one transaction, each unless a user has it already.
async fn fill_batch(pool: &AnyPool, names: &[String]) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut filled = 0;
    for username in names {
        filled += sqlx::query(
            "UPDATE users SET skeleton = $1 WHERE username = $2 AND skeleton IS NULL \
             AND NOT EXISTS (SELECT 1 FROM users AS other WHERE other.skeleton = $1)",
        )
        .bind(skeleton(username))
        .bind(username)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(filled)
}

impl UserStore {
    /// Whether an enrolled user other than `username` has its skeleton: the
    /// enrollment's early refusal (the unique index decides under a race).
    pub async fn confusable_with_enrolled(&self, username: &str) -> Result<bool, StoreError> {
        let query = sqlx::query("SELECT 1 AS found FROM users WHERE skeleton = $1 AND username <> $2")
            .bind(skeleton(username))
            .bind(username)
            .fetch_optional(&self.pool);
        bounded(self.timeout, async { Ok(query.await?.is_some()) }).await
    }

    /// Which uniqueness an insert of `username` violated: its name, or its skeleton.
    pub(super) async fn taken(&self, username: &str) -> Result<StoreError, StoreError> {
        let exact = sqlx::query("SELECT 1 AS found FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if exact.is_some() { StoreError::DuplicateUsername } else { StoreError::ConfusableUsername })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::FaceEmbedding;

    fn embedding() -> FaceEmbedding {
        FaceEmbedding::from_raw(&[0.5f32; 512]).expect("embedding")
    }

    async fn look_alikes_are_refused(store: UserStore, tag: &str) {
        let (alice, cyrillic, fullwidth) =
            (format!("alice-{tag}"), format!("\u{0430}lice-{tag}"), format!("\u{FF41}lice-{tag}"));
        for name in [&alice, &cyrillic, &fullwidth] {
            store.erase(name).await.expect("clean");
        }
        store.insert(&alice, &embedding(), "m1").await.expect("insert");
        assert!(matches!(store.insert(&alice, &embedding(), "m1").await, Err(StoreError::DuplicateUsername)));
        for look_alike in [&cyrillic, &fullwidth] {
            assert!(store.confusable_with_enrolled(look_alike).await.expect("lookup"), "{look_alike}");
            let refused = store.insert(look_alike, &embedding(), "m1").await;
            assert!(matches!(refused, Err(StoreError::ConfusableUsername)), "{look_alike}: {refused:?}");
        }
        assert!(!store.confusable_with_enrolled(&alice).await.expect("lookup"), "a name is not its own look-alike");
        // Erased, the name's skeleton is free again.
        store.erase(&alice).await.expect("erase");
        store.insert(&cyrillic, &embedding(), "m1").await.expect("insert");
        store.erase(&cyrillic).await.expect("clean");
    }

    #[tokio::test]
    async fn sqlite_look_alike_usernames_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        look_alikes_are_refused(UserStore::connect(&url).await.expect("connect"), "sqlite").await;
    }

    #[tokio::test]
    async fn postgres_look_alike_usernames_are_refused() {
        if let Some(store) = crate::store::tests::test_postgres().await {
            look_alikes_are_refused(store, "postgres").await;
        }
    }

    /// Users enrolled before the column get their skeleton at start-up; of two
    /// look-alikes enrolled then, the older keeps it.
    #[tokio::test]
    async fn skeletons_are_filled_for_older_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = UserStore::connect(&url).await.expect("connect");
        for (name, at) in [("alice", 2), ("\u{0430}lice", 1), ("bob", 3)] {
            sqlx::query(
                "INSERT INTO users (username, embedding, model_version, enrolled_at) VALUES ($1, $2, 'm1', $3)",
            )
            .bind(name)
            .bind(embedding().to_bytes())
            .bind(at)
            .execute(&store.pool)
            .await
            .expect("an old row");
        }
        assert_eq!(fill_skeletons(&store.pool).await.expect("fill"), 2);
        let holder: String = sqlx::query("SELECT username FROM users WHERE skeleton = $1")
            .bind(skeleton("alice"))
            .fetch_one(&store.pool)
            .await
            .expect("row")
            .get("username");
        assert_eq!(holder, "\u{0430}lice", "the older look-alike keeps the skeleton");
        // Both accounts stay; a third look-alike is refused.
        assert!(store.find("alice").await.expect("find").is_some());
        assert!(matches!(store.insert("al\u{0456}ce", &embedding(), "m1").await, Err(StoreError::ConfusableUsername)));
        assert_eq!(fill_skeletons(&store.pool).await.expect("again"), 0);
    }
}
