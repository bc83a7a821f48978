-- =====================================================================================
-- 0002_v002_commerce.sql — CELAEST Core, schema V002 (the spec's "V002 - 20 tablas")
--
-- Holds commerce, account security, outgoing webhooks and license enforcement:
--   catalogue ....... product_categories, products, product_reviews, product_releases
--   ownership ....... customer_assets, asset_downloads
--   billing ......... payment_gateways, payment_methods, tax_rates, coupons, orders,
--                     order_items, invoices
--   account security  user_sessions, user_api_keys
--   webhooks ........ webhooks, webhook_deliveries
--   licensing ....... license_ip_bindings, license_validations, license_collisions
-- and, at the end, the foreign keys from V001 tables into V002 tables that 0001 could not
-- declare: licenses.product_id -> products, licenses.order_id -> orders,
-- roi_metrics.product_id -> products.
--
-- Same conventions as 0001 (uuid ids, timestamptz, *_cents bigint + currency char(3),
-- named CHECK constraints for closed sets, set_updated_at() trigger on mutable tables).
-- =====================================================================================

-- -------------------------------------------------------------------------------------
-- product_categories
-- -------------------------------------------------------------------------------------

CREATE TABLE product_categories (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL,
    slug            text NOT NULL,
    description     text,
    parent_id       uuid REFERENCES product_categories (id) ON DELETE SET NULL,
    icon            text,
    sort_order      integer NOT NULL DEFAULT 0,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT product_categories_slug_key UNIQUE (slug),
    CONSTRAINT product_categories_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    CONSTRAINT product_categories_slug_check
        CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 100),
    CONSTRAINT product_categories_parent_id_check CHECK (parent_id IS NULL OR parent_id <> id)
);

COMMENT ON TABLE product_categories IS 'Hierarchical marketplace categories (parent_id tree).';

CREATE INDEX product_categories_parent_id_idx ON product_categories (parent_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON product_categories
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- products
-- -------------------------------------------------------------------------------------

CREATE TABLE products (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                    text NOT NULL,     -- PRODUCT_CODE inside license keys
    name                    text NOT NULL,
    slug                    text NOT NULL,
    short_description       text,
    description             text,
    category_id             uuid REFERENCES product_categories (id) ON DELETE SET NULL,
    product_type            text NOT NULL,
    status                  text NOT NULL DEFAULT 'draft',
    price_cents             bigint NOT NULL DEFAULT 0,
    compare_at_price_cents  bigint,
    currency                char(3) NOT NULL DEFAULT 'USD',
    billing_interval        text NOT NULL DEFAULT 'one_time',
    license_duration_days   integer,           -- NULL = perpetual licenses
    default_max_ips         integer NOT NULL DEFAULT 5,
    collision_threshold     integer,           -- NULL = global default (system_config)
    is_featured             boolean NOT NULL DEFAULT false,
    thumbnail_url           text,
    images                  jsonb NOT NULL DEFAULT '[]'::jsonb,
    tags                    text[] NOT NULL DEFAULT '{}',
    features                jsonb NOT NULL DEFAULT '[]'::jsonb,
    metadata                jsonb NOT NULL DEFAULT '{}'::jsonb,
    rating_avg              numeric(3,2) NOT NULL DEFAULT 0,
    rating_count            integer NOT NULL DEFAULT 0,
    sales_count             integer NOT NULL DEFAULT 0,
    owner_id                uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    published_at            timestamptz,
    deleted_at              timestamptz,       -- soft delete
    search_vector           tsvector GENERATED ALWAYS AS (
                                to_tsvector('simple',
                                    coalesce(name, '') || ' ' ||
                                    coalesce(short_description, '') || ' ' ||
                                    coalesce(description, ''))
                            ) STORED,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_code_key UNIQUE (code),
    CONSTRAINT products_slug_key UNIQUE (slug),
    CONSTRAINT products_code_check CHECK (code ~ '^[A-Z0-9]{2,10}$'),
    CONSTRAINT products_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT products_slug_check
        CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 100),
    CONSTRAINT products_product_type_check
        CHECK (product_type IN ('software', 'saas', 'api', 'template', 'dataset', 'course', 'service')),
    CONSTRAINT products_status_check
        CHECK (status IN ('draft', 'published', 'archived', 'coming_soon')),
    CONSTRAINT products_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT products_compare_at_price_cents_check
        CHECK (compare_at_price_cents IS NULL OR compare_at_price_cents >= 0),
    CONSTRAINT products_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT products_billing_interval_check
        CHECK (billing_interval IN ('month', 'year', 'one_time')),
    CONSTRAINT products_license_duration_days_check
        CHECK (license_duration_days IS NULL OR license_duration_days > 0),
    CONSTRAINT products_default_max_ips_check CHECK (default_max_ips BETWEEN 1 AND 1000),
    CONSTRAINT products_collision_threshold_check
        CHECK (collision_threshold IS NULL OR collision_threshold >= 1),
    CONSTRAINT products_images_check CHECK (jsonb_typeof(images) = 'array'),
    CONSTRAINT products_features_check CHECK (jsonb_typeof(features) = 'array'),
    CONSTRAINT products_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT products_rating_check
        CHECK (rating_avg BETWEEN 0 AND 5 AND rating_count >= 0 AND sales_count >= 0)
);

COMMENT ON TABLE products IS 'Marketplace catalogue: sellable products with pricing, licensing defaults and full-text search vector.';
COMMENT ON COLUMN products.search_vector IS 'Generated; never insert/select it through sqlx (tsvector has no Rust mapping) — use it in WHERE only.';

CREATE INDEX products_status_idx ON products (status, created_at DESC);
CREATE INDEX products_category_id_idx ON products (category_id);
CREATE INDEX products_product_type_idx ON products (product_type);
CREATE INDEX products_is_featured_idx ON products (created_at DESC) WHERE is_featured;
CREATE INDEX products_created_at_idx ON products (created_at DESC);
CREATE INDEX products_price_cents_idx ON products (price_cents);
CREATE INDEX products_owner_id_idx ON products (owner_id);
CREATE INDEX products_search_vector_idx ON products USING gin (search_vector);
CREATE INDEX products_tags_idx ON products USING gin (tags);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- product_reviews
-- -------------------------------------------------------------------------------------

CREATE TABLE product_reviews (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id              uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    user_id                 uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    rating                  smallint NOT NULL,
    title                   text,
    body                    text,
    status                  text NOT NULL DEFAULT 'pending',
    is_verified_purchase    boolean NOT NULL DEFAULT false,
    helpful_count           integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT product_reviews_product_id_user_id_key UNIQUE (product_id, user_id),
    CONSTRAINT product_reviews_rating_check CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT product_reviews_status_check CHECK (status IN ('pending', 'approved', 'rejected')),
    CONSTRAINT product_reviews_helpful_count_check CHECK (helpful_count >= 0)
);

COMMENT ON TABLE product_reviews IS 'One moderated rating/review per user and product.';

CREATE INDEX product_reviews_product_status_idx ON product_reviews (product_id, status, created_at DESC);
CREATE INDEX product_reviews_user_id_idx ON product_reviews (user_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON product_reviews
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- product_releases
-- -------------------------------------------------------------------------------------

CREATE TABLE product_releases (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id              uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    version                 text NOT NULL,     -- semver, e.g. 2.1.0-beta
    -- Parsed from version by PostgreSQL (generated): never written by the application.
    version_major           integer GENERATED ALWAYS AS
                                ((substring(version FROM '^(\d{1,9})\.'))::integer) STORED,
    version_minor           integer GENERATED ALWAYS AS
                                ((substring(version FROM '^\d{1,9}\.(\d{1,9})\.'))::integer) STORED,
    version_patch           integer GENERATED ALWAYS AS
                                ((substring(version FROM '^\d{1,9}\.\d{1,9}\.(\d{1,9})(?:[-+]|$)'))::integer) STORED,
    version_prerelease      text GENERATED ALWAYS AS
                                (substring(version FROM '^\d+\.\d+\.\d+-([0-9A-Za-z.-]+)')) STORED,
    status                  text NOT NULL DEFAULT 'stable',
    title                   text,
    changelog               text,
    download_url            text,
    storage_path            text,              -- Supabase Storage object path
    file_name               text,
    file_size_bytes         bigint,
    checksum_sha256         text,              -- lowercase hex
    min_supported_version   text,
    download_count          bigint NOT NULL DEFAULT 0,
    published_at            timestamptz,
    yanked_at               timestamptz,
    yanked_reason           text,
    created_by              uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT product_releases_product_id_version_key UNIQUE (product_id, version),
    CONSTRAINT product_releases_version_check
        CHECK (version ~ '^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'),
    CONSTRAINT product_releases_min_supported_version_check
        CHECK (min_supported_version IS NULL
               OR min_supported_version ~ '^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'),
    CONSTRAINT product_releases_status_check
        CHECK (status IN ('stable', 'beta', 'alpha', 'deprecated', 'yanked')),
    CONSTRAINT product_releases_yanked_at_check CHECK (status <> 'yanked' OR yanked_at IS NOT NULL),
    CONSTRAINT product_releases_file_size_bytes_check
        CHECK (file_size_bytes IS NULL OR file_size_bytes >= 0),
    CONSTRAINT product_releases_checksum_sha256_check
        CHECK (checksum_sha256 IS NULL OR checksum_sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT product_releases_download_count_check CHECK (download_count >= 0)
);

COMMENT ON TABLE product_releases IS 'Semver-versioned releases of a product with changelog, downloadable file and status.';

-- "latest release" lookups: ORDER BY version_major DESC, version_minor DESC, version_patch DESC.
CREATE INDEX product_releases_latest_idx
    ON product_releases (product_id, version_major DESC, version_minor DESC, version_patch DESC);
CREATE INDEX product_releases_created_by_idx ON product_releases (created_by)
    WHERE created_by IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON product_releases
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- payment_gateways
-- -------------------------------------------------------------------------------------

CREATE TABLE payment_gateways (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                    text NOT NULL,     -- stripe, ...
    name                    text NOT NULL,
    is_active               boolean NOT NULL DEFAULT true,
    is_default              boolean NOT NULL DEFAULT false,
    config                  jsonb NOT NULL DEFAULT '{}'::jsonb,  -- non-secret settings only
    supported_currencies    text[] NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_gateways_code_key UNIQUE (code),
    CONSTRAINT payment_gateways_code_check CHECK (code ~ '^[a-z0-9_]{2,32}$'),
    CONSTRAINT payment_gateways_config_check CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT payment_gateways_supported_currencies_check
        CHECK (array_to_string(supported_currencies, ',') ~ '^([A-Z]{3}(,[A-Z]{3})*)?$')
);

COMMENT ON TABLE payment_gateways IS 'Configured payment providers (Stripe, ...) with non-secret settings and currencies.';

CREATE UNIQUE INDEX payment_gateways_single_default_key ON payment_gateways ((true)) WHERE is_default;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON payment_gateways
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- payment_methods
-- -------------------------------------------------------------------------------------

CREATE TABLE payment_methods (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    gateway_id          uuid NOT NULL REFERENCES payment_gateways (id) ON DELETE RESTRICT,
    provider_method_id  text NOT NULL,         -- Stripe pm_...
    type                text NOT NULL,
    brand               text,
    last4               text,
    exp_month           smallint,
    exp_year            smallint,
    is_default          boolean NOT NULL DEFAULT false,
    billing_details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_methods_provider_method_id_key UNIQUE (provider_method_id),
    CONSTRAINT payment_methods_type_check
        CHECK (type IN ('card', 'bank_account', 'sepa_debit', 'paypal', 'other')),
    CONSTRAINT payment_methods_last4_check CHECK (last4 IS NULL OR last4 ~ '^[0-9]{4}$'),
    CONSTRAINT payment_methods_exp_month_check CHECK (exp_month IS NULL OR exp_month BETWEEN 1 AND 12),
    CONSTRAINT payment_methods_exp_year_check CHECK (exp_year IS NULL OR exp_year BETWEEN 2000 AND 2200),
    CONSTRAINT payment_methods_billing_details_check CHECK (jsonb_typeof(billing_details) = 'object')
);

COMMENT ON TABLE payment_methods IS 'Saved customer payment methods (tokenised at the gateway; only display data kept).';

-- One default payment method per user (clear the old default before setting a new one).
CREATE UNIQUE INDEX payment_methods_one_default_per_user_key ON payment_methods (user_id) WHERE is_default;
CREATE INDEX payment_methods_user_id_idx ON payment_methods (user_id, created_at DESC);
CREATE INDEX payment_methods_organization_id_idx ON payment_methods (organization_id)
    WHERE organization_id IS NOT NULL;
CREATE INDEX payment_methods_gateway_id_idx ON payment_methods (gateway_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON payment_methods
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- tax_rates
-- -------------------------------------------------------------------------------------

CREATE TABLE tax_rates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,         -- e.g. "IVA general"
    country             char(2) NOT NULL,      -- ISO 3166-1 alpha-2
    region              text,                  -- state / province, NULL = whole country
    rate_bps            integer NOT NULL,      -- basis points: 2100 = 21.00 %
    is_inclusive        boolean NOT NULL DEFAULT false,
    is_active           boolean NOT NULL DEFAULT true,
    stripe_tax_rate_id  text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tax_rates_stripe_tax_rate_id_key UNIQUE (stripe_tax_rate_id),
    CONSTRAINT tax_rates_country_check CHECK (country ~ '^[A-Z]{2}$'),
    CONSTRAINT tax_rates_rate_bps_check CHECK (rate_bps BETWEEN 0 AND 10000)
);

COMMENT ON TABLE tax_rates IS 'Tax rates by country/region in basis points (2100 = 21%).';

CREATE INDEX tax_rates_country_region_idx ON tax_rates (country, region) WHERE is_active;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON tax_rates
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- coupons
-- -------------------------------------------------------------------------------------

CREATE TABLE coupons (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                        text NOT NULL,
    description                 text,
    coupon_type                 text NOT NULL,
    percent_off                 integer,       -- percentage coupons: 1..100
    amount_off_cents            bigint,        -- fixed_amount coupons
    currency                    char(3),       -- required for fixed_amount
    max_redemptions             integer,       -- NULL = unlimited
    times_redeemed              integer NOT NULL DEFAULT 0,
    max_redemptions_per_user    integer,       -- NULL = unlimited
    min_order_cents             bigint,
    valid_from                  timestamptz,
    valid_until                 timestamptz,
    product_ids                 uuid[] NOT NULL DEFAULT '{}',  -- empty = every product
    is_active                   boolean NOT NULL DEFAULT true,
    created_by                  uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_code_key UNIQUE (code),
    CONSTRAINT coupons_code_check CHECK (code ~ '^[A-Z0-9_-]{3,32}$'),
    CONSTRAINT coupons_coupon_type_check CHECK (coupon_type IN ('percentage', 'fixed_amount')),
    CONSTRAINT coupons_percent_off_check CHECK (percent_off IS NULL OR percent_off BETWEEN 1 AND 100),
    CONSTRAINT coupons_amount_off_cents_check CHECK (amount_off_cents IS NULL OR amount_off_cents > 0),
    CONSTRAINT coupons_currency_check CHECK (currency IS NULL OR currency ~ '^[A-Z]{3}$'),
    CONSTRAINT coupons_value_check
        CHECK ((coupon_type = 'percentage'
                    AND percent_off IS NOT NULL AND amount_off_cents IS NULL)
            OR (coupon_type = 'fixed_amount'
                    AND percent_off IS NULL AND amount_off_cents IS NOT NULL AND currency IS NOT NULL)),
    CONSTRAINT coupons_redemptions_check
        CHECK (times_redeemed >= 0
               AND (max_redemptions IS NULL OR (max_redemptions >= 1 AND times_redeemed <= max_redemptions))
               AND (max_redemptions_per_user IS NULL OR max_redemptions_per_user >= 1)),
    CONSTRAINT coupons_min_order_cents_check CHECK (min_order_cents IS NULL OR min_order_cents >= 0),
    CONSTRAINT coupons_validity_check
        CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_until > valid_from)
);

COMMENT ON TABLE coupons IS 'Discount codes (percentage or fixed amount) with validity window and redemption limits.';

CREATE INDEX coupons_created_at_idx ON coupons (created_at DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON coupons
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- orders
-- -------------------------------------------------------------------------------------

CREATE TABLE orders (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_number                text NOT NULL,
    user_id                     uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id             uuid REFERENCES organizations (id) ON DELETE SET NULL,
    status                      text NOT NULL DEFAULT 'pending',
    subtotal_cents              bigint NOT NULL DEFAULT 0,
    discount_cents              bigint NOT NULL DEFAULT 0,
    tax_cents                   bigint NOT NULL DEFAULT 0,
    total_cents                 bigint NOT NULL DEFAULT 0,
    refunded_cents              bigint NOT NULL DEFAULT 0,
    currency                    char(3) NOT NULL,
    coupon_id                   uuid REFERENCES coupons (id) ON DELETE SET NULL,
    coupon_code                 text,          -- snapshot of the code applied
    tax_rate_id                 uuid REFERENCES tax_rates (id) ON DELETE SET NULL,
    payment_method_id           uuid REFERENCES payment_methods (id) ON DELETE SET NULL,
    gateway_id                  uuid REFERENCES payment_gateways (id) ON DELETE RESTRICT,
    stripe_payment_intent_id    text,
    paid_at                     timestamptz,
    completed_at                timestamptz,
    cancelled_at                timestamptz,
    cancel_reason               text,
    refunded_at                 timestamptz,
    billing_address             jsonb,
    notes                       text,
    metadata                    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_order_number_key UNIQUE (order_number),
    CONSTRAINT orders_stripe_payment_intent_id_key UNIQUE (stripe_payment_intent_id),
    CONSTRAINT orders_order_number_check CHECK (order_number ~ '^[A-Z0-9][A-Z0-9-]{3,39}$'),
    CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'processing', 'completed', 'cancelled', 'failed',
                          'refunded', 'partially_refunded')),
    CONSTRAINT orders_amounts_check
        CHECK (subtotal_cents >= 0 AND discount_cents >= 0 AND tax_cents >= 0
               AND total_cents >= 0 AND refunded_cents >= 0),
    CONSTRAINT orders_discount_check CHECK (discount_cents <= subtotal_cents),
    CONSTRAINT orders_total_check CHECK (total_cents = subtotal_cents - discount_cents + tax_cents),
    CONSTRAINT orders_refunded_check CHECK (refunded_cents <= total_cents),
    CONSTRAINT orders_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT orders_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE orders IS 'Customer orders with integer-cent totals, coupon/tax applied and Stripe payment state.';

CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_organization_id_created_at_idx ON orders (organization_id, created_at DESC)
    WHERE organization_id IS NOT NULL;
CREATE INDEX orders_status_created_at_idx ON orders (status, created_at DESC);
CREATE INDEX orders_created_at_idx ON orders (created_at DESC);
CREATE INDEX orders_coupon_id_user_id_idx ON orders (coupon_id, user_id) WHERE coupon_id IS NOT NULL;
CREATE INDEX orders_payment_method_id_idx ON orders (payment_method_id) WHERE payment_method_id IS NOT NULL;
CREATE INDEX orders_tax_rate_id_idx ON orders (tax_rate_id) WHERE tax_rate_id IS NOT NULL;
CREATE INDEX orders_gateway_id_idx ON orders (gateway_id) WHERE gateway_id IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- order_items
-- -------------------------------------------------------------------------------------

CREATE TABLE order_items (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id            uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id          uuid NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    description         text NOT NULL,         -- snapshot of the product name at purchase
    quantity            integer NOT NULL DEFAULT 1,
    unit_price_cents    bigint NOT NULL,
    discount_cents      bigint NOT NULL DEFAULT 0,
    tax_cents           bigint NOT NULL DEFAULT 0,
    total_cents         bigint NOT NULL,
    currency            char(3) NOT NULL,
    license_id          uuid REFERENCES licenses (id) ON DELETE SET NULL,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_items_amounts_check
        CHECK (unit_price_cents >= 0 AND discount_cents >= 0 AND tax_cents >= 0 AND total_cents >= 0),
    CONSTRAINT order_items_total_check
        CHECK (total_cents = unit_price_cents * quantity - discount_cents + tax_cents),
    CONSTRAINT order_items_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT order_items_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

COMMENT ON TABLE order_items IS 'Line items of an order: product, quantity, price snapshot and the license issued for it.';

CREATE INDEX order_items_order_id_idx ON order_items (order_id);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);
CREATE INDEX order_items_license_id_idx ON order_items (license_id) WHERE license_id IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON order_items
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- invoices
-- -------------------------------------------------------------------------------------

CREATE TABLE invoices (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    invoice_number      text NOT NULL,
    order_id            uuid REFERENCES orders (id) ON DELETE RESTRICT,
    user_id             uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'draft',
    subtotal_cents      bigint NOT NULL DEFAULT 0,
    discount_cents      bigint NOT NULL DEFAULT 0,
    tax_cents           bigint NOT NULL DEFAULT 0,
    total_cents         bigint NOT NULL DEFAULT 0,
    amount_paid_cents   bigint NOT NULL DEFAULT 0,
    currency            char(3) NOT NULL,
    issued_at           timestamptz,
    due_at              timestamptz,
    paid_at             timestamptz,
    sent_at             timestamptz,
    voided_at           timestamptz,
    pdf_storage_path    text,                  -- Supabase Storage object path
    stripe_invoice_id   text,
    billing_details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    line_items          jsonb NOT NULL DEFAULT '[]'::jsonb,  -- immutable snapshot of the lines
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invoices_invoice_number_key UNIQUE (invoice_number),
    CONSTRAINT invoices_stripe_invoice_id_key UNIQUE (stripe_invoice_id),
    CONSTRAINT invoices_status_check CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    CONSTRAINT invoices_amounts_check
        CHECK (subtotal_cents >= 0 AND discount_cents >= 0 AND tax_cents >= 0
               AND total_cents >= 0 AND amount_paid_cents >= 0),
    CONSTRAINT invoices_total_check CHECK (total_cents = subtotal_cents - discount_cents + tax_cents),
    CONSTRAINT invoices_amount_paid_check CHECK (amount_paid_cents <= total_cents),
    CONSTRAINT invoices_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT invoices_billing_details_check CHECK (jsonb_typeof(billing_details) = 'object'),
    CONSTRAINT invoices_line_items_check CHECK (jsonb_typeof(line_items) = 'array')
);

COMMENT ON TABLE invoices IS 'Invoices issued for orders, with amounts, lifecycle dates, line-item snapshot and PDF location.';

CREATE INDEX invoices_user_id_created_at_idx ON invoices (user_id, created_at DESC);
CREATE INDEX invoices_organization_id_created_at_idx ON invoices (organization_id, created_at DESC)
    WHERE organization_id IS NOT NULL;
CREATE INDEX invoices_order_id_idx ON invoices (order_id);
CREATE INDEX invoices_status_created_at_idx ON invoices (status, created_at DESC);
CREATE INDEX invoices_created_at_idx ON invoices (created_at DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- customer_assets
-- -------------------------------------------------------------------------------------

CREATE TABLE customer_assets (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    organization_id     uuid REFERENCES organizations (id) ON DELETE SET NULL,
    product_id          uuid NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    order_id            uuid REFERENCES orders (id) ON DELETE SET NULL,
    license_id          uuid REFERENCES licenses (id) ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'active',
    access_expires_at   timestamptz,           -- NULL = permanent access
    download_count      integer NOT NULL DEFAULT 0,
    download_limit      integer,               -- NULL = unlimited
    acquired_at         timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_assets_status_check CHECK (status IN ('active', 'revoked', 'expired', 'refunded')),
    CONSTRAINT customer_assets_download_count_check CHECK (download_count >= 0),
    CONSTRAINT customer_assets_download_limit_check CHECK (download_limit IS NULL OR download_limit > 0)
);

COMMENT ON TABLE customer_assets IS 'Products a customer owns (from an order or granted), with access window and download quota.';

CREATE INDEX customer_assets_user_id_idx ON customer_assets (user_id, acquired_at DESC);
CREATE INDEX customer_assets_organization_id_idx ON customer_assets (organization_id)
    WHERE organization_id IS NOT NULL;
CREATE INDEX customer_assets_product_id_idx ON customer_assets (product_id);
CREATE INDEX customer_assets_order_id_idx ON customer_assets (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX customer_assets_license_id_idx ON customer_assets (license_id) WHERE license_id IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON customer_assets
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- asset_downloads (append-only)
-- -------------------------------------------------------------------------------------

CREATE TABLE asset_downloads (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    asset_id        uuid NOT NULL REFERENCES customer_assets (id) ON DELETE CASCADE,
    release_id      uuid REFERENCES product_releases (id) ON DELETE SET NULL,
    user_id         uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    ip_address      inet,
    user_agent      text,
    downloaded_at   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE asset_downloads IS 'Append-only log of each download of an owned asset (which release, who, from where).';

CREATE INDEX asset_downloads_asset_id_idx ON asset_downloads (asset_id, downloaded_at DESC);
CREATE INDEX asset_downloads_release_id_idx ON asset_downloads (release_id) WHERE release_id IS NOT NULL;
CREATE INDEX asset_downloads_user_id_idx ON asset_downloads (user_id) WHERE user_id IS NOT NULL;

-- -------------------------------------------------------------------------------------
-- user_sessions
-- -------------------------------------------------------------------------------------

CREATE TABLE user_sessions (
    id              uuid PRIMARY KEY,          -- = Supabase session_id (JWT claim); no default
    user_id         uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    ip_address      inet,
    user_agent      text,
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE user_sessions IS 'Supabase sessions seen by the API, so sessions can be listed and revoked server-side.';

CREATE INDEX user_sessions_user_id_idx ON user_sessions (user_id, created_at DESC);
CREATE INDEX user_sessions_expires_at_idx ON user_sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON user_sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- user_api_keys
-- -------------------------------------------------------------------------------------

CREATE TABLE user_api_keys (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    name            text NOT NULL,
    key_prefix      text NOT NULL,             -- visible part shown in listings
    key_hash        bytea NOT NULL,            -- SHA-256 of the full key
    scopes          text[] NOT NULL DEFAULT '{}',
    expires_at      timestamptz,               -- NULL = never expires
    last_used_at    timestamptz,
    last_used_ip    inet,
    revoked_at      timestamptz,
    rotated_from_id uuid REFERENCES user_api_keys (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT user_api_keys_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    CONSTRAINT user_api_keys_key_prefix_check CHECK (length(key_prefix) BETWEEN 4 AND 32),
    CONSTRAINT user_api_keys_key_hash_check CHECK (octet_length(key_hash) = 32),
    CONSTRAINT user_api_keys_rotated_from_id_check CHECK (rotated_from_id IS NULL OR rotated_from_id <> id)
);

COMMENT ON TABLE user_api_keys IS 'Personal API keys (X-API-Key): SHA-256 hash, visible prefix, scopes, expiry, revocation, rotation chain.';

CREATE INDEX user_api_keys_user_id_idx ON user_api_keys (user_id, created_at DESC);
CREATE INDEX user_api_keys_rotated_from_id_idx ON user_api_keys (rotated_from_id)
    WHERE rotated_from_id IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON user_api_keys
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- webhooks
-- -------------------------------------------------------------------------------------

CREATE TABLE webhooks (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 uuid NOT NULL REFERENCES users_profile (id) ON DELETE CASCADE,
    organization_id         uuid REFERENCES organizations (id) ON DELETE CASCADE,
    url                     text NOT NULL,
    description             text,
    events                  text[] NOT NULL,   -- e.g. {order.completed,license.validated}; '*' = all
    secret_encrypted        bytea NOT NULL,    -- AES-256-GCM ciphertext of the whsec_... secret
    secret_nonce            bytea NOT NULL,
    is_active               boolean NOT NULL DEFAULT true,
    consecutive_failures    integer NOT NULL DEFAULT 0,
    last_delivery_at        timestamptz,
    disabled_at             timestamptz,
    disabled_reason         text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_url_check CHECK (url ~ '^https?://' AND length(url) <= 2048),
    CONSTRAINT webhooks_events_check
        CHECK (array_to_string(events, ',') ~ '^(\*|[a-z_]+\.[a-z_*]+)(,(\*|[a-z_]+\.[a-z_*]+))*$'),
    CONSTRAINT webhooks_secret_encrypted_check CHECK (octet_length(secret_encrypted) > 16),
    CONSTRAINT webhooks_secret_nonce_check CHECK (octet_length(secret_nonce) = 12),
    CONSTRAINT webhooks_consecutive_failures_check CHECK (consecutive_failures >= 0)
);

COMMENT ON TABLE webhooks IS 'Outgoing webhook endpoints: URL, subscribed events, encrypted signing secret, health.';

CREATE INDEX webhooks_user_id_idx ON webhooks (user_id, created_at DESC);
CREATE INDEX webhooks_organization_id_idx ON webhooks (organization_id) WHERE organization_id IS NOT NULL;
CREATE INDEX webhooks_events_idx ON webhooks USING gin (events) WHERE is_active;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- webhook_deliveries
-- -------------------------------------------------------------------------------------

CREATE TABLE webhook_deliveries (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id          uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id            uuid NOT NULL,         -- the "webhook-id" header; same for every retry
    event_type          text NOT NULL,
    payload             jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending',
    attempt             integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 8,
    next_attempt_at     timestamptz,           -- NULL once succeeded/dead
    response_status     integer,
    response_body       text,                  -- truncated
    error               text,
    duration_ms         integer,
    delivered_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_webhook_id_event_id_key UNIQUE (webhook_id, event_id),
    CONSTRAINT webhook_deliveries_event_type_check CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
    CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'dead')),
    CONSTRAINT webhook_deliveries_attempt_check
        CHECK (attempt >= 0 AND max_attempts >= 1 AND attempt <= max_attempts),
    CONSTRAINT webhook_deliveries_response_status_check
        CHECK (response_status IS NULL OR response_status BETWEEN 100 AND 599),
    CONSTRAINT webhook_deliveries_duration_ms_check CHECK (duration_ms IS NULL OR duration_ms >= 0)
);

COMMENT ON TABLE webhook_deliveries IS 'Outgoing webhook delivery attempts per event with retry schedule and last response.';

CREATE INDEX webhook_deliveries_status_next_attempt_at_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook_id_created_at_idx ON webhook_deliveries (webhook_id, created_at DESC);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- license_ip_bindings
-- -------------------------------------------------------------------------------------

CREATE TABLE license_ip_bindings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_id          uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    ip_address          inet NOT NULL,
    source              text NOT NULL DEFAULT 'auto',
    device_info         text,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    validation_count    bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT license_ip_bindings_license_id_ip_address_key UNIQUE (license_id, ip_address),
    CONSTRAINT license_ip_bindings_source_check CHECK (source IN ('auto', 'manual')),
    CONSTRAINT license_ip_bindings_ip_address_check
        CHECK (masklen(ip_address) = CASE family(ip_address) WHEN 4 THEN 32 ELSE 128 END),
    CONSTRAINT license_ip_bindings_validation_count_check CHECK (validation_count >= 0)
);

COMMENT ON TABLE license_ip_bindings IS 'IP addresses bound to a license (the max_ips slots), auto-bound on validation or added manually.';

CREATE TRIGGER set_updated_at BEFORE UPDATE ON license_ip_bindings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- license_validations (append-only, idempotent by writer-supplied id)
-- -------------------------------------------------------------------------------------

CREATE TABLE license_validations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- supplied by the writer
    license_id      uuid REFERENCES licenses (id) ON DELETE SET NULL,  -- NULL = unknown key
    key_hash        bytea,                     -- SHA-256 of the presented key (also for unknown keys)
    ip_address      inet NOT NULL,
    device_info     text,
    result_code     text NOT NULL,             -- VALID, LICENSE_EXPIRED, IP_LIMIT_REACHED, ...
    valid           boolean NOT NULL,
    answered_by     text NOT NULL DEFAULT 'central',  -- 'central' or the edge id
    region          text,
    validated_at    timestamptz NOT NULL,      -- when the answer was given (edge clock)
    received_at     timestamptz NOT NULL DEFAULT now(),  -- when central stored it
    CONSTRAINT license_validations_key_hash_check CHECK (key_hash IS NULL OR octet_length(key_hash) = 32),
    CONSTRAINT license_validations_result_code_check CHECK (result_code ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    CONSTRAINT license_validations_answered_by_check CHECK (length(answered_by) BETWEEN 1 AND 128)
);

COMMENT ON TABLE license_validations IS 'Append-only record of every license validation answered by central or an edge (insert ON CONFLICT (id) DO NOTHING).';

CREATE INDEX license_validations_license_id_validated_at_idx
    ON license_validations (license_id, validated_at DESC);
CREATE INDEX license_validations_validated_at_idx ON license_validations (validated_at DESC);

-- -------------------------------------------------------------------------------------
-- license_collisions
-- -------------------------------------------------------------------------------------

CREATE TABLE license_collisions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_id      uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    ip_addresses    inet[] NOT NULL,
    ip_count        integer NOT NULL,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    detected_by     text NOT NULL DEFAULT 'central',  -- 'central' or the edge id
    status          text NOT NULL DEFAULT 'open',
    auto_revoked    boolean NOT NULL DEFAULT false,
    resolved_at     timestamptz,
    resolved_by     uuid REFERENCES users_profile (id) ON DELETE SET NULL,
    notes           text,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT license_collisions_ip_count_check
        CHECK (ip_count >= 2 AND cardinality(ip_addresses) >= 1),
    CONSTRAINT license_collisions_window_check CHECK (window_end >= window_start),
    CONSTRAINT license_collisions_detected_by_check CHECK (length(detected_by) BETWEEN 1 AND 128),
    CONSTRAINT license_collisions_status_check CHECK (status IN ('open', 'resolved', 'ignored')),
    CONSTRAINT license_collisions_resolved_at_check CHECK (status = 'open' OR resolved_at IS NOT NULL)
);

COMMENT ON TABLE license_collisions IS 'Detected concurrent use of one license from 2+ IPs within the collision window, and its resolution.';

CREATE INDEX license_collisions_license_id_detected_at_idx ON license_collisions (license_id, detected_at DESC);
CREATE INDEX license_collisions_status_detected_at_idx ON license_collisions (status, detected_at DESC);
CREATE INDEX license_collisions_resolved_by_idx ON license_collisions (resolved_by) WHERE resolved_by IS NOT NULL;

CREATE TRIGGER set_updated_at BEFORE UPDATE ON license_collisions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- -------------------------------------------------------------------------------------
-- Foreign keys from V001 tables into V002 tables (could not be declared in 0001)
-- -------------------------------------------------------------------------------------

-- A product with licenses cannot be hard-deleted (products are soft-deleted via deleted_at).
ALTER TABLE licenses
    ADD CONSTRAINT licenses_product_id_fkey
    FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE RESTRICT;

-- Manually issued licenses have no order; deleting an order keeps its licenses.
ALTER TABLE licenses
    ADD CONSTRAINT licenses_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE SET NULL;

-- Per-product ROI rows are derived data and go with their product.
ALTER TABLE roi_metrics
    ADD CONSTRAINT roi_metrics_product_id_fkey
    FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE;
