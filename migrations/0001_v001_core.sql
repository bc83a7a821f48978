-- =====================================================================================
-- 0001_v001_core.sql — CELAEST Core, schema V001 (the spec's "V001 - 15 tablas")
--
-- Holds the core of the system:
--   accounts ........ subscription_plans, organizations, users_profile
--   licensing ....... licenses, license_usage_log
--   IA-Mesh ......... ai_models, ai_api_pool, prompts_master, task_batches, processed_tasks
--   analytics/audit . roi_metrics, audit_logs, telemetry_events
--   settings ........ system_config, feature_flags
-- plus the shared trigger function set_updated_at() and the append-only guard for audit_logs.
--
-- Conventions (apply to every migration of this project):
--   * ids are uuid DEFAULT gen_random_uuid() unless noted (users_profile.id = Supabase auth user
--     id; high-volume append logs use bigint identity); times are timestamptz.
--   * closed sets are text NOT NULL + a named CHECK constraint "<table>_<column>_check"
--     (no PG enums, so a new value is a one-line constraint swap).
--   * money is bigint minor units in "*_cents" + currency char(3); AI prices/costs are bigint
--     micro-USD in "*_micros"; rates are basis points ("*_bps").
--   * every mutable table has created_at/updated_at; updated_at is maintained by the trigger
--     "set_updated_at" (function set_updated_at()).
--   * foreign keys that point at V002 tables (licenses.product_id, licenses.order_id,
--     roi_metrics.product_id) are added by 0002_v002_commerce.sql.
-- =====================================================================================

-- -------------------------------------------------------------------------------------
-- Shared trigger functions
-- -------------------------------------------------------------------------------------

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION set_updated_at() IS
    'BEFORE UPDATE row trigger: stamps updated_at with now(). Attached as trigger "set_updated_at" on every mutable table.';

-- audit_logs is append-only. The only UPDATE allowed is the one PostgreSQL itself performs for
-- ON DELETE SET NULL of user_id / organization_id (deleting a user or org must not be blocked by
-- its audit trail); any other UPDATE, and every DELETE, raises.
CREATE FUNCTION audit_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.user_id IS NULL OR NEW.user_id = OLD.user_id)
       AND (NEW.organization_id IS NULL OR NEW.organization_id = OLD.organization_id)
       AND (to_jsonb(NEW) - 'user_id' - 'organization_id')
           = (to_jsonb(OLD) - 'user_id' - 'organization_id')
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries can only be inserted.';
END;
$$;

COMMENT ON FUNCTION audit_logs_append_only() IS
    'Guards audit_logs: raises on DELETE and on any UPDATE other than FK SET NULL of user_id/organization_id.';

-- -------------------------------------------------------------------------------------
-- subscription_plans
-- -------------------------------------------------------------------------------------

CREATE TABLE subscription_plans (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                    text NOT NULL,
    name                    text NOT NULL,
    description             text,
    price_cents             bigint NOT NULL DEFAULT 0,
    currency                char(3) NOT NULL DEFAULT 'USD',
    billing_interval        text NOT NULL DEFAULT 'month',
    trial_days              integer NOT NULL DEFAULT 0,
    max_members             integer,           -- NULL = unlimited
    max_licenses            integer,           -- NULL = unlimited
    max_products            integer,           -- NULL = unlimited
    ai_requests_per_month   integer,           -- NULL = unlimited
    features                jsonb NOT NULL DEFAULT '{}'::jsonb,
    stripe_price_id         text,
    is_active               boolean NOT NULL DEFAULT true,
    sort_order              integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscription_plans_code_key UNIQUE (code),
    CONSTRAINT subscription_plans_stripe_price_id_key UNIQUE (stripe_price_id),
    CONSTRAINT subscription_plans_code_check CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    CONSTRAINT subscription_plans_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    CONSTRAINT subscription_plans_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT subscription_plans_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT subscription_plans_billing_interval_check
        CHECK (billing_interval IN ('month', 'year', 'one_time')),
    CONSTRAINT subscription_plans_trial_days_check CHECK (trial_days BETWEEN 0 AND 365),
    CONSTRAINT subscription_plans_max_members_check CHECK (max_members IS NULL OR max_members >= 1),
    CONSTRAINT subscription_plans_max_licenses_check CHECK (max_licenses IS NULL OR max_licenses >= 0),
    CONSTRAINT subscription_plans_max_products_check CHECK (max_products IS NULL OR max_products >= 0),
    CONSTRAINT subscription_plans_ai_requests_per_month_check
        CHECK (ai_requests_per_month IS NULL OR ai_requests_per_month >= 0),
    CONSTRAINT subscription_plans_features_check CHECK (jsonb_typeof(features) = 'object')
);

COMMENT ON TABLE subscription_plans IS 'Catalogue of organization subscription plans (free, pro, enterprise) with price and quotas.';

CREATE TRIGGER set_updated_at BEFORE UPDATE ON subscription_plans
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- organizations
-- -------------------------------------------------------------------------------------

CREATE TABLE organizations (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                    text NOT NULL,
    slug                    text NOT NULL,
    description             text,
    logo_url                text,
    website                 text,
    billing_email           text,
    subscription_plan_id    uuid REFERENCES subscription_plans (id) ON DELETE RESTRICT,
    subscription_status     text,              -- NULL = no subscription
    current_period_start    timestamptz,
    current_period_end      timestamptz,
    trial_ends_at           timestamptz,
    stripe_customer_id      text,
    stripe_subscription_id  text,
    settings                jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active               boolean NOT NULL DEFAULT true,
    deleted_at              timestamptz,       -- soft delete
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organizations_slug_key UNIQUE (slug),
    CONSTRAINT organizations_stripe_customer_id_key UNIQUE (stripe_customer_id),
    CONSTRAINT organizations_stripe_subscription_id_key UNIQUE (stripe_subscription_id),
    CONSTRAINT organizations_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT organizations_slug_check
        CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 63),
    CONSTRAINT organizations_billing_email_check
        CHECK (billing_email IS NULL OR billing_email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT organizations_subscription_status_check
        CHECK (subscription_status IN ('trialing', 'active', 'past_due', 'canceled', 'incomplete')),
    CONSTRAINT organizations_current_period_check
        CHECK (current_period_end IS NULL OR current_period_start IS NULL
               OR current_period_end > current_period_start),
    CONSTRAINT organizations_settings_check CHECK (jsonb_typeof(settings) = 'object')
);

COMMENT ON TABLE organizations IS 'Customer organizations (tenants) with their subscription plan and Stripe billing state.';

CREATE INDEX organizations_subscription_plan_id_idx ON organizations (subscription_plan_id);
CREATE INDEX organizations_created_at_idx ON organizations (created_at DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- users_profile
-- -------------------------------------------------------------------------------------

CREATE TABLE users_profile (
    id                  uuid PRIMARY KEY,      -- = Supabase auth.users.id (JWT "sub"); no default
    email               text NOT NULL,
    full_name           text,
    display_name        text,
    avatar_url          text,
    phone               text,
    role                text NOT NULL DEFAULT 'client',
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,  -- primary org
    locale              text NOT NULL DEFAULT 'es',
    timezone            text NOT NULL DEFAULT 'UTC',
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active           boolean NOT NULL DEFAULT true,
    last_login_at       timestamptz,
    last_seen_at        timestamptz,
    stripe_customer_id  text,
    deleted_at          timestamptz,           -- soft delete
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_profile_stripe_customer_id_key UNIQUE (stripe_customer_id),
    CONSTRAINT users_profile_email_check
        CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$' AND length(email) <= 320),
    CONSTRAINT users_profile_role_check CHECK (role IN ('admin', 'developer', 'client', 'viewer')),
    CONSTRAINT users_profile_locale_check CHECK (locale IN ('es', 'en')),
    CONSTRAINT users_profile_phone_check CHECK (phone IS NULL OR length(phone) <= 32),
    CONSTRAINT users_profile_timezone_check CHECK (length(timezone) BETWEEN 1 AND 64),
    CONSTRAINT users_profile_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE users_profile IS 'Application profile of each Supabase auth user: role, primary organization, preferences.';

-- Case-insensitive uniqueness of e-mail (no citext): look users up with lower(email) = lower($1).
CREATE UNIQUE INDEX users_profile_email_lower_key ON users_profile (lower(email));
CREATE INDEX users_profile_organization_id_idx ON users_profile (organization_id);
CREATE INDEX users_profile_role_idx ON users_profile (role);
CREATE INDEX users_profile_created_at_idx ON users_profile (created_at DESC);
CREATE INDEX users_profile_last_seen_at_idx ON users_profile (last_seen_at DESC)
    WHERE last_seen_at IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON users_profile
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- licenses
-- -------------------------------------------------------------------------------------

CREATE TABLE licenses (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_key         text NOT NULL,         -- CELAEST-{PRODUCT_CODE}-{RANDOM_8}-{CHECKSUM_4}
    key_hash            bytea NOT NULL,        -- SHA-256(license_key): lookup key, what edges hold
    product_id          uuid NOT NULL,         -- FK -> products added in 0002
    user_id             uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    order_id            uuid,                  -- FK -> orders added in 0002
    status              text NOT NULL DEFAULT 'active',
    max_ips             integer NOT NULL DEFAULT 5,
    expires_at          timestamptz,           -- NULL = perpetual
    activated_at        timestamptz,
    suspended_at        timestamptz,
    suspended_reason    text,
    revoked_at          timestamptz,
    revoked_reason      text,
    collision_count     integer NOT NULL DEFAULT 0,
    validation_count    bigint NOT NULL DEFAULT 0,
    last_validated_at   timestamptz,
    notes               text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by          uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT licenses_license_key_key UNIQUE (license_key),
    CONSTRAINT licenses_key_hash_key UNIQUE (key_hash),
    CONSTRAINT licenses_license_key_check
        CHECK (license_key ~ '^CELAEST-[A-Z0-9]{2,10}-[0-9A-F]{8}-[0-9A-Z]{4}$'),
    CONSTRAINT licenses_key_hash_check CHECK (octet_length(key_hash) = 32),
    CONSTRAINT licenses_status_check CHECK (status IN ('active', 'suspended', 'revoked', 'expired')),
    CONSTRAINT licenses_max_ips_check CHECK (max_ips BETWEEN 1 AND 1000),
    CONSTRAINT licenses_suspended_at_check CHECK (status <> 'suspended' OR suspended_at IS NOT NULL),
    CONSTRAINT licenses_revoked_at_check CHECK (status <> 'revoked' OR revoked_at IS NOT NULL),
    CONSTRAINT licenses_collision_count_check CHECK (collision_count >= 0),
    CONSTRAINT licenses_validation_count_check CHECK (validation_count >= 0),
    CONSTRAINT licenses_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE licenses IS 'Commercial license keys: owner, product, status, IP slot limit, expiry and validation counters.';
COMMENT ON COLUMN licenses.key_hash IS 'SHA-256 of license_key (32 bytes); validation looks licenses up by this hash.';

CREATE INDEX licenses_status_idx ON licenses (status, created_at DESC);
CREATE INDEX licenses_product_id_idx ON licenses (product_id, created_at DESC);
CREATE INDEX licenses_user_id_idx ON licenses (user_id, created_at DESC);
CREATE INDEX licenses_organization_id_idx ON licenses (organization_id, created_at DESC);
CREATE INDEX licenses_order_id_idx ON licenses (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX licenses_created_by_idx ON licenses (created_by) WHERE created_by IS NOT NULL;
CREATE INDEX licenses_created_at_idx ON licenses (created_at DESC);
CREATE INDEX licenses_expires_at_idx ON licenses (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON licenses
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- license_usage_log
-- -------------------------------------------------------------------------------------

CREATE TABLE license_usage_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    license_id          uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    usage_date          date NOT NULL,
    validation_count    bigint NOT NULL DEFAULT 0,
    success_count       bigint NOT NULL DEFAULT 0,
    failure_count       bigint NOT NULL DEFAULT 0,
    unique_ip_count     integer NOT NULL DEFAULT 0,
    last_ip             inet,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT license_usage_log_license_id_usage_date_key UNIQUE (license_id, usage_date),
    CONSTRAINT license_usage_log_counts_check
        CHECK (validation_count >= 0 AND success_count >= 0 AND failure_count >= 0
               AND unique_ip_count >= 0)
);

COMMENT ON TABLE license_usage_log IS 'Per-license, per-day validation counters (upserted on (license_id, usage_date)).';

CREATE INDEX license_usage_log_usage_date_idx ON license_usage_log (usage_date);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON license_usage_log
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- ai_models
-- -------------------------------------------------------------------------------------

CREATE TABLE ai_models (
    id                              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider                        text NOT NULL,
    model_id                        text NOT NULL,   -- the provider's model name
    display_name                    text NOT NULL,
    context_window                  integer,
    max_output_tokens               integer,
    input_price_per_mtok_micros     bigint NOT NULL DEFAULT 0,  -- micro-USD per 1M input tokens
    output_price_per_mtok_micros    bigint NOT NULL DEFAULT 0,  -- micro-USD per 1M output tokens
    capabilities                    jsonb NOT NULL DEFAULT '[]'::jsonb,  -- e.g. ["chat","vision"]
    is_active                       boolean NOT NULL DEFAULT true,
    is_default                      boolean NOT NULL DEFAULT false,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_models_provider_model_id_key UNIQUE (provider, model_id),
    CONSTRAINT ai_models_provider_check
        CHECK (provider IN ('gemini', 'openai', 'groq', 'deepseek', 'anthropic')),
    CONSTRAINT ai_models_model_id_check CHECK (length(model_id) BETWEEN 1 AND 200),
    CONSTRAINT ai_models_context_window_check CHECK (context_window IS NULL OR context_window > 0),
    CONSTRAINT ai_models_max_output_tokens_check
        CHECK (max_output_tokens IS NULL OR max_output_tokens > 0),
    CONSTRAINT ai_models_prices_check
        CHECK (input_price_per_mtok_micros >= 0 AND output_price_per_mtok_micros >= 0),
    CONSTRAINT ai_models_capabilities_check CHECK (jsonb_typeof(capabilities) = 'array')
);

COMMENT ON TABLE ai_models IS 'AI models offered by the five providers, with context limits and per-token prices.';

-- At most one default model per provider.
CREATE UNIQUE INDEX ai_models_default_per_provider_key ON ai_models (provider) WHERE is_default;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON ai_models
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- ai_api_pool
-- -------------------------------------------------------------------------------------

CREATE TABLE ai_api_pool (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider            text NOT NULL,
    label               text NOT NULL,
    encrypted_key       bytea NOT NULL,        -- AES-256-GCM ciphertext (with tag)
    key_nonce           bytea NOT NULL,        -- 96-bit GCM nonce
    key_hint            text,                  -- last 4 characters, for display
    key_fingerprint     bytea,                 -- SHA-256 of the plaintext key: dedupes imports
    weight              integer NOT NULL DEFAULT 10,
    rpm_limit           integer,               -- NULL = provider default / unlimited
    tpm_limit           integer,
    status              text NOT NULL DEFAULT 'active',
    cooldown_until      timestamptz,
    total_requests      bigint NOT NULL DEFAULT 0,
    total_errors        bigint NOT NULL DEFAULT 0,
    total_input_tokens  bigint NOT NULL DEFAULT 0,
    total_output_tokens bigint NOT NULL DEFAULT 0,
    total_cost_micros   bigint NOT NULL DEFAULT 0,
    last_used_at        timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    created_by          uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_api_pool_key_fingerprint_key UNIQUE (key_fingerprint),
    CONSTRAINT ai_api_pool_provider_check
        CHECK (provider IN ('gemini', 'openai', 'groq', 'deepseek', 'anthropic')),
    CONSTRAINT ai_api_pool_label_check CHECK (length(btrim(label)) BETWEEN 1 AND 100),
    CONSTRAINT ai_api_pool_encrypted_key_check CHECK (octet_length(encrypted_key) > 16),
    CONSTRAINT ai_api_pool_key_nonce_check CHECK (octet_length(key_nonce) = 12),
    CONSTRAINT ai_api_pool_key_hint_check CHECK (key_hint IS NULL OR length(key_hint) <= 8),
    CONSTRAINT ai_api_pool_key_fingerprint_check
        CHECK (key_fingerprint IS NULL OR octet_length(key_fingerprint) = 32),
    CONSTRAINT ai_api_pool_weight_check CHECK (weight BETWEEN 1 AND 1000),
    CONSTRAINT ai_api_pool_rpm_limit_check CHECK (rpm_limit IS NULL OR rpm_limit > 0),
    CONSTRAINT ai_api_pool_tpm_limit_check CHECK (tpm_limit IS NULL OR tpm_limit > 0),
    CONSTRAINT ai_api_pool_status_check
        CHECK (status IN ('active', 'rate_limited', 'disabled', 'invalid')),
    CONSTRAINT ai_api_pool_counters_check
        CHECK (total_requests >= 0 AND total_errors >= 0 AND total_input_tokens >= 0
               AND total_output_tokens >= 0 AND total_cost_micros >= 0)
);

COMMENT ON TABLE ai_api_pool IS 'Pool of encrypted AI provider API keys with weights, rate limits, health state and usage totals.';

CREATE INDEX ai_api_pool_provider_status_idx ON ai_api_pool (provider, status);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON ai_api_pool
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- prompts_master
-- -------------------------------------------------------------------------------------

CREATE TABLE prompts_master (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,
    slug                text NOT NULL,
    description         text,
    category            text,
    system_prompt       text,
    user_template       text NOT NULL,
    variables           jsonb NOT NULL DEFAULT '[]'::jsonb,  -- ["product_name", ...]
    default_model_id    uuid REFERENCES ai_models (id) ON DELETE SET NULL,
    temperature         real NOT NULL DEFAULT 0.7,
    max_tokens          integer,
    version             integer NOT NULL DEFAULT 1,
    is_active           boolean NOT NULL DEFAULT true,
    created_by          uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id     uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- NULL = global
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT prompts_master_slug_key UNIQUE (slug),
    CONSTRAINT prompts_master_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT prompts_master_slug_check
        CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 100),
    CONSTRAINT prompts_master_variables_check CHECK (jsonb_typeof(variables) = 'array'),
    CONSTRAINT prompts_master_temperature_check CHECK (temperature >= 0 AND temperature <= 2),
    CONSTRAINT prompts_master_max_tokens_check CHECK (max_tokens IS NULL OR max_tokens > 0),
    CONSTRAINT prompts_master_version_check CHECK (version >= 1)
);

COMMENT ON TABLE prompts_master IS 'Reusable prompt templates (system prompt, user template, variables, default model).';

CREATE INDEX prompts_master_organization_id_idx ON prompts_master (organization_id);
CREATE INDEX prompts_master_category_idx ON prompts_master (category);
CREATE INDEX prompts_master_default_model_id_idx ON prompts_master (default_model_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON prompts_master
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- task_batches
-- -------------------------------------------------------------------------------------

CREATE TABLE task_batches (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text,
    user_id             uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'pending',
    total_tasks         integer NOT NULL DEFAULT 0,
    completed_tasks     integer NOT NULL DEFAULT 0,
    failed_tasks        integer NOT NULL DEFAULT 0,
    config              jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at          timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_batches_status_check
        CHECK (status IN ('pending', 'processing', 'completed', 'partially_completed',
                          'failed', 'cancelled')),
    CONSTRAINT task_batches_counts_check
        CHECK (total_tasks >= 0 AND completed_tasks >= 0 AND failed_tasks >= 0
               AND completed_tasks + failed_tasks <= total_tasks),
    CONSTRAINT task_batches_config_check CHECK (jsonb_typeof(config) = 'object')
);

COMMENT ON TABLE task_batches IS 'Groups of asynchronous AI tasks submitted together, with progress counters.';

CREATE INDEX task_batches_user_id_idx ON task_batches (user_id, created_at DESC);
CREATE INDEX task_batches_organization_id_idx ON task_batches (organization_id, created_at DESC);
CREATE INDEX task_batches_status_idx ON task_batches (status, created_at);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON task_batches
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- processed_tasks
-- -------------------------------------------------------------------------------------

CREATE TABLE processed_tasks (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id            uuid REFERENCES task_batches (id) ON DELETE SET NULL,
    user_id             uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    prompt_id           uuid REFERENCES prompts_master (id) ON DELETE SET NULL,
    provider            text,                  -- NULL = let the selector choose
    model               text,                  -- provider model name requested / used
    api_key_id          uuid REFERENCES ai_api_pool (id) ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'pending',
    priority            smallint NOT NULL DEFAULT 0,   -- higher runs first
    input               jsonb NOT NULL,        -- messages / template variables
    config              jsonb NOT NULL DEFAULT '{}'::jsonb,
    result              jsonb,
    error_code          text,
    error_message       text,
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 3,
    input_tokens        integer NOT NULL DEFAULT 0,
    output_tokens       integer NOT NULL DEFAULT 0,
    cost_micros         bigint NOT NULL DEFAULT 0,
    latency_ms          integer,
    queued_at           timestamptz,
    started_at          timestamptz,
    completed_at        timestamptz,
    cancelled_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processed_tasks_provider_check
        CHECK (provider IN ('gemini', 'openai', 'groq', 'deepseek', 'anthropic')),
    CONSTRAINT processed_tasks_status_check
        CHECK (status IN ('pending', 'queued', 'processing', 'completed', 'failed', 'cancelled')),
    CONSTRAINT processed_tasks_priority_check CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT processed_tasks_attempts_check CHECK (attempts >= 0),
    CONSTRAINT processed_tasks_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 20),
    CONSTRAINT processed_tasks_usage_check
        CHECK (input_tokens >= 0 AND output_tokens >= 0 AND cost_micros >= 0
               AND (latency_ms IS NULL OR latency_ms >= 0)),
    CONSTRAINT processed_tasks_config_check CHECK (jsonb_typeof(config) = 'object')
);

COMMENT ON TABLE processed_tasks IS 'AI tasks (async jobs and logged sync calls): input, status, result, tokens, cost and timing.';

CREATE INDEX processed_tasks_user_id_created_at_idx ON processed_tasks (user_id, created_at DESC);
CREATE INDEX processed_tasks_status_created_at_idx ON processed_tasks (status, created_at);
CREATE INDEX processed_tasks_organization_id_idx ON processed_tasks (organization_id, created_at DESC)
    WHERE organization_id IS NOT NULL;
CREATE INDEX processed_tasks_batch_id_idx ON processed_tasks (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX processed_tasks_prompt_id_idx ON processed_tasks (prompt_id) WHERE prompt_id IS NOT NULL;
CREATE INDEX processed_tasks_api_key_id_idx ON processed_tasks (api_key_id) WHERE api_key_id IS NOT NULL;
CREATE INDEX processed_tasks_provider_created_at_idx ON processed_tasks (provider, created_at DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON processed_tasks
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- roi_metrics
-- -------------------------------------------------------------------------------------

CREATE TABLE roi_metrics (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id                  uuid,          -- NULL = whole business; FK -> products added in 0002
    period_type                 text NOT NULL,
    period_start                date NOT NULL,
    revenue_cents               bigint NOT NULL DEFAULT 0,   -- gross order totals
    refunds_cents               bigint NOT NULL DEFAULT 0,
    ai_costs_micros             bigint NOT NULL DEFAULT 0,
    infrastructure_costs_cents  bigint NOT NULL DEFAULT 0,
    currency                    char(3) NOT NULL DEFAULT 'USD',
    orders_count                integer NOT NULL DEFAULT 0,
    licenses_sold               integer NOT NULL DEFAULT 0,
    active_licenses             integer NOT NULL DEFAULT 0,
    ai_requests                 bigint NOT NULL DEFAULT 0,
    roi_percent                 numeric(12,4), -- NULL when costs are zero (ratio undefined)
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roi_metrics_product_period_key
        UNIQUE NULLS NOT DISTINCT (product_id, period_type, period_start),
    CONSTRAINT roi_metrics_period_type_check CHECK (period_type IN ('day', 'week', 'month')),
    CONSTRAINT roi_metrics_period_start_check
        CHECK ((period_type <> 'week' OR extract(isodow FROM period_start) = 1)
               AND (period_type <> 'month' OR extract(day FROM period_start) = 1)),
    CONSTRAINT roi_metrics_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT roi_metrics_amounts_check
        CHECK (revenue_cents >= 0 AND refunds_cents >= 0 AND ai_costs_micros >= 0
               AND infrastructure_costs_cents >= 0),
    CONSTRAINT roi_metrics_counts_check
        CHECK (orders_count >= 0 AND licenses_sold >= 0 AND active_licenses >= 0
               AND ai_requests >= 0)
);

COMMENT ON TABLE roi_metrics IS 'Daily/weekly/monthly aggregates of revenue, refunds, AI and infrastructure costs and ROI, per product or overall.';

CREATE INDEX roi_metrics_period_idx ON roi_metrics (period_type, period_start DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON roi_metrics
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- audit_logs (append-only)
-- -------------------------------------------------------------------------------------

CREATE TABLE audit_logs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    actor_type          text NOT NULL DEFAULT 'user',
    api_key_id          uuid,                  -- no FK: keys may be deleted, the trail stays
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    action              text NOT NULL,         -- e.g. license.created
    entity_type         text,
    entity_id           text,
    changes             jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"field": [old, new]}
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip_address          inet,
    user_agent          text,
    request_id          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_actor_type_check
        CHECK (actor_type IN ('user', 'api_key', 'system', 'edge')),
    CONSTRAINT audit_logs_api_key_id_check CHECK (actor_type <> 'api_key' OR api_key_id IS NOT NULL),
    CONSTRAINT audit_logs_action_check CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    CONSTRAINT audit_logs_changes_check CHECK (jsonb_typeof(changes) = 'object'),
    CONSTRAINT audit_logs_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE audit_logs IS 'Append-only audit trail of who did what to which entity (UPDATE/DELETE raise).';

CREATE INDEX audit_logs_created_at_idx ON audit_logs (created_at DESC);
CREATE INDEX audit_logs_user_id_created_at_idx ON audit_logs (user_id, created_at DESC);
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity_type, entity_id);
CREATE INDEX audit_logs_action_created_at_idx ON audit_logs (action, created_at DESC);
CREATE INDEX audit_logs_organization_id_created_at_idx ON audit_logs (organization_id, created_at DESC);

CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();

-- -------------------------------------------------------------------------------------
-- telemetry_events (append-only, high volume; loose references, no FKs)
-- -------------------------------------------------------------------------------------

CREATE TABLE telemetry_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type          text NOT NULL,
    severity            text NOT NULL DEFAULT 'info',
    source              text NOT NULL DEFAULT 'central',
    user_id             uuid,                  -- loose references: telemetry must never be
    organization_id     uuid,                  -- rejected or rewritten because the entity
    product_id          uuid,                  -- was deleted or is unknown to central
    license_id          uuid,
    message             text,
    error_code          text,
    stack_trace         text,
    properties          jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id          text,
    ip_address          inet,
    occurred_at         timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_events_event_type_check CHECK (event_type ~ '^[a-z0-9_.-]{1,100}$'),
    CONSTRAINT telemetry_events_severity_check
        CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
    CONSTRAINT telemetry_events_source_check
        CHECK (source IN ('central', 'edge', 'worker', 'client')),
    CONSTRAINT telemetry_events_properties_check CHECK (jsonb_typeof(properties) = 'object')
);

COMMENT ON TABLE telemetry_events IS 'Append-only operational events and errors from central, edges, workers and clients.';

CREATE INDEX telemetry_events_event_type_occurred_at_idx ON telemetry_events (event_type, occurred_at DESC);
CREATE INDEX telemetry_events_severity_occurred_at_idx ON telemetry_events (severity, occurred_at DESC);
CREATE INDEX telemetry_events_occurred_at_idx ON telemetry_events (occurred_at DESC);

-- -------------------------------------------------------------------------------------
-- system_config
-- -------------------------------------------------------------------------------------

CREATE TABLE system_config (
    key                 text PRIMARY KEY,      -- e.g. licensing.collision_threshold
    value               jsonb NOT NULL,
    value_type          text NOT NULL DEFAULT 'json',
    category            text NOT NULL DEFAULT 'general',
    description         text,
    is_secret           boolean NOT NULL DEFAULT false,  -- value masked by the API
    is_public           boolean NOT NULL DEFAULT false,  -- readable without admin role
    updated_by          uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT system_config_key_check
        CHECK (key ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' AND length(key) <= 100),
    CONSTRAINT system_config_value_type_check
        CHECK (value_type IN ('string', 'number', 'boolean', 'json')),
    CONSTRAINT system_config_value_matches_type_check
        CHECK (value_type = 'json' OR jsonb_typeof(value) = value_type),
    CONSTRAINT system_config_secret_not_public_check CHECK (NOT (is_secret AND is_public))
);

COMMENT ON TABLE system_config IS 'Runtime system settings as typed JSON values keyed by dotted name.';

CREATE INDEX system_config_category_idx ON system_config (category);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON system_config
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- feature_flags
-- -------------------------------------------------------------------------------------

CREATE TABLE feature_flags (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key                 text NOT NULL,
    name                text NOT NULL,
    description         text,
    enabled             boolean NOT NULL DEFAULT false,
    environments        jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"production": true, ...}
    rollout_percentage  integer NOT NULL DEFAULT 100,
    user_overrides      jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"<user uuid>": true|false}
    org_overrides       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"<org uuid>": true|false}
    updated_by          uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feature_flags_key_key UNIQUE (key),
    CONSTRAINT feature_flags_key_check CHECK (key ~ '^[a-z0-9_.-]+$' AND length(key) <= 100),
    CONSTRAINT feature_flags_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT feature_flags_rollout_percentage_check CHECK (rollout_percentage BETWEEN 0 AND 100),
    CONSTRAINT feature_flags_environments_check CHECK (jsonb_typeof(environments) = 'object'),
    CONSTRAINT feature_flags_user_overrides_check CHECK (jsonb_typeof(user_overrides) = 'object'),
    CONSTRAINT feature_flags_org_overrides_check CHECK (jsonb_typeof(org_overrides) = 'object')
);

COMMENT ON TABLE feature_flags IS 'Feature flags with per-environment switches, percentage rollout and user/org overrides.';

CREATE TRIGGER set_updated_at BEFORE UPDATE ON feature_flags
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
