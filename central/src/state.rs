//! The application state every handler receives: shared, cheap to clone, with narrow views
//! through `FromRef` so a handler (or a test) asks only for what it uses.

use std::{sync::Arc, time::Instant};

use axum::extract::FromRef;
use sqlx::PgPool;

use crate::{auth::AuthService, cache::Redis, config::Config, licensing::validate::Licensing};

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: PgPool,
    pub redis: Redis,
    pub auth: Arc<AuthService>,
    pub licensing: Arc<Licensing>,
    /// Outgoing HTTP (Supabase, Stripe, AI providers), one connection pool for all.
    pub http: reqwest::Client,
    pub started_at: Instant,
}

impl AppState {
    /// Builds the state from configuration and an already-opened pool.
    pub fn new(config: Config, db: PgPool) -> anyhow::Result<Self> {
        // Before anything records: the process-wide recorder (a no-op after the first app).
        crate::metrics::install();
        let redis = Redis::new(&config.redis)?;
        // reqwest is built without a TLS crypto provider of its own (its default would compile
        // aws-lc, a C library): ring, which rustls and quinn already use here, becomes the process
        // default. An error only means a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("celaest-central/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let auth = Arc::new(AuthService::new(&config, http.clone())?);
        let licensing = Arc::new(Licensing::new(
            &config.licensing,
            db.clone(),
            redis.clone(),
        )?);
        Ok(Self {
            config: Arc::new(config),
            db,
            redis,
            auth,
            licensing,
            http,
            started_at: Instant::now(),
        })
    }
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for Redis {
    fn from_ref(state: &AppState) -> Self {
        state.redis.clone()
    }
}

impl FromRef<AppState> for Arc<Config> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}
