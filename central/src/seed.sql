-- Demo data for local runs and manual testing. Idempotent: every row has a fixed id or a natural
-- key and is inserted with ON CONFLICT DO NOTHING (or NOT EXISTS), so running it twice changes
-- nothing and never overwrites what a developer edited.

INSERT INTO subscription_plans (id, code, name, description, price_cents, currency, billing_interval,
                                trial_days, max_members, max_licenses, max_products, ai_requests_per_month,
                                features, sort_order)
VALUES
  ('10000000-0000-4000-8000-000000000001', 'free', 'Free', 'Para empezar', 0, 'USD', 'month',
   0, 3, 10, 2, 100, '{"edge_validation": true}', 1),
  ('10000000-0000-4000-8000-000000000002', 'pro', 'Pro', 'Para equipos en crecimiento', 2900, 'USD', 'month',
   14, 20, 1000, 50, 10000, '{"edge_validation": true, "ai_mesh": true, "webhooks": true}', 2),
  ('10000000-0000-4000-8000-000000000003', 'enterprise', 'Enterprise', 'Sin límites', 19900, 'USD', 'month',
   30, NULL, NULL, NULL, NULL, '{"edge_validation": true, "ai_mesh": true, "webhooks": true, "sso": true}', 3)
ON CONFLICT DO NOTHING;

INSERT INTO organizations (id, name, slug, description, billing_email, subscription_plan_id, subscription_status)
VALUES ('20000000-0000-4000-8000-000000000001', 'Celaest Demo', 'celaest-demo', 'Organización de demostración',
        'billing@celaest.dev', '10000000-0000-4000-8000-000000000002', 'active')
ON CONFLICT DO NOTHING;

INSERT INTO users_profile (id, email, full_name, role, organization_id, locale)
VALUES
  ('30000000-0000-4000-8000-000000000001', 'admin@celaest.dev', 'Ada Admin', 'admin',
   '20000000-0000-4000-8000-000000000001', 'es'),
  ('30000000-0000-4000-8000-000000000002', 'dev@celaest.dev', 'Diego Developer', 'developer',
   '20000000-0000-4000-8000-000000000001', 'es'),
  ('30000000-0000-4000-8000-000000000003', 'client@celaest.dev', 'Clara Client', 'client',
   '20000000-0000-4000-8000-000000000001', 'en'),
  ('30000000-0000-4000-8000-000000000004', 'viewer@celaest.dev', 'Victor Viewer', 'viewer',
   '20000000-0000-4000-8000-000000000001', 'es')
ON CONFLICT DO NOTHING;

INSERT INTO product_categories (id, name, slug, description, sort_order)
VALUES
  ('40000000-0000-4000-8000-000000000001', 'Software', 'software', 'Aplicaciones de escritorio y servidor', 1),
  ('40000000-0000-4000-8000-000000000002', 'SaaS', 'saas', 'Servicios en la nube', 2),
  ('40000000-0000-4000-8000-000000000003', 'Cursos', 'cursos', 'Formación', 3)
ON CONFLICT DO NOTHING;

INSERT INTO products (id, code, name, slug, short_description, category_id, product_type, status,
                      price_cents, currency, billing_interval, license_duration_days, default_max_ips,
                      is_featured, tags, owner_id, published_at)
VALUES
  ('50000000-0000-4000-8000-000000000001', 'MKT', 'Marketing Suite', 'marketing-suite',
   'Automatización de marketing', '40000000-0000-4000-8000-000000000001', 'software', 'published',
   4900, 'USD', 'one_time', 365, 5, true, '{marketing,automation}',
   '30000000-0000-4000-8000-000000000002', now()),
  ('50000000-0000-4000-8000-000000000002', 'CRM', 'CRM Pro', 'crm-pro',
   'Gestión de clientes', '40000000-0000-4000-8000-000000000002', 'saas', 'published',
   9900, 'USD', 'month', 30, 3, false, '{crm,sales}',
   '30000000-0000-4000-8000-000000000002', now()),
  ('50000000-0000-4000-8000-000000000003', 'DATA', 'Data API', 'data-api',
   'API de datos (próximamente)', '40000000-0000-4000-8000-000000000002', 'api', 'coming_soon',
   1900, 'USD', 'month', NULL, 5, false, '{api}',
   '30000000-0000-4000-8000-000000000002', NULL)
ON CONFLICT DO NOTHING;

INSERT INTO tax_rates (id, name, country, region, rate_bps, is_inclusive)
VALUES
  ('60000000-0000-4000-8000-000000000001', 'IVA general', 'ES', NULL, 2100, false),
  ('60000000-0000-4000-8000-000000000002', 'IVA', 'MX', NULL, 1600, false),
  ('60000000-0000-4000-8000-000000000003', 'Sales tax (CA)', 'US', 'CA', 725, false)
ON CONFLICT DO NOTHING;

INSERT INTO payment_gateways (id, code, name, is_active, is_default, supported_currencies)
VALUES ('70000000-0000-4000-8000-000000000001', 'stripe', 'Stripe', true, true, '{USD,EUR,MXN}')
ON CONFLICT DO NOTHING;

INSERT INTO system_config (key, value, value_type, category, description, is_public)
VALUES
  ('app.name', '"CELAEST"', 'string', 'general', 'Nombre comercial', true),
  ('licensing.default_max_ips', '5', 'number', 'licensing', 'IPs por licencia si el producto no dice otra cosa', false),
  ('licensing.collision_window_seconds', '300', 'number', 'licensing', 'Ventana de detección de colisiones', false),
  ('licensing.collision_threshold', '3', 'number', 'licensing', 'Colisiones antes de revocar automáticamente', false),
  ('licensing.auto_revoke_on_collision', 'false', 'boolean', 'licensing', 'Revocación automática por colisiones (apagada por defecto)', false),
  ('ai.request_timeout_seconds', '30', 'number', 'ai', 'Tiempo máximo por llamada a un proveedor', false)
ON CONFLICT DO NOTHING;

INSERT INTO feature_flags (key, name, description, enabled, environments, rollout_percentage)
VALUES
  ('ai_mesh', 'IA-Mesh', 'Pasarela multi-proveedor de IA', true, '{"development": true, "production": true}', 100),
  ('marketplace_reviews', 'Reseñas', 'Reseñas de productos en el marketplace', true, '{"development": true}', 50),
  ('edge_validation', 'Validación en el edge', 'Validación de licencias en nodos edge', true, '{}', 100)
ON CONFLICT DO NOTHING;

INSERT INTO ai_models (provider, model_id, display_name, context_window, max_output_tokens,
                       input_price_per_mtok_micros, output_price_per_mtok_micros, capabilities, is_default)
VALUES
  ('gemini', 'gemini-2.0-flash', 'Gemini 2.0 Flash', 1048576, 8192, 100000, 400000, '["chat","vision"]', true),
  ('openai', 'gpt-4o-mini', 'GPT-4o mini', 128000, 16384, 150000, 600000, '["chat","vision"]', false),
  ('groq', 'llama-3.3-70b-versatile', 'Llama 3.3 70B (Groq)', 128000, 32768, 590000, 790000, '["chat"]', false),
  ('deepseek', 'deepseek-chat', 'DeepSeek Chat', 64000, 8192, 270000, 1100000, '["chat"]', false),
  ('anthropic', 'claude-3-5-haiku-latest', 'Claude 3.5 Haiku', 200000, 8192, 800000, 4000000, '["chat","vision"]', false)
ON CONFLICT DO NOTHING;

INSERT INTO organization_members (organization_id, user_id, role)
VALUES
  ('20000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000001', 'owner'),
  ('20000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000002', 'admin'),
  ('20000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000003', 'member'),
  ('20000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000004', 'member')
ON CONFLICT DO NOTHING;
