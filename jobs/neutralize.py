"""What makes a copy of an Odoo database harmless: the service's own version of Odoo's neutralize.

Odoo's `odoo-bin neutralize` runs each installed module's `data/neutralize.sql`; the data Jobs
run the service's image, not Odoo's, so a clone's restore Job runs this SQL instead, in the
restore's own transaction (a copy is never committed un-neutralized, and a failure here leaves
the new instance empty). It mirrors the statements of the modules a SaaS tenant has (base, mail
and fetchmail, payment, delivery, Odoo's own services), each guarded by the table it changes, so
a database without that module is left alone:

- scheduled actions off (Odoo keeps its own `autovacuum_job`: the database's housekeeping);
- outgoing mail servers and incoming mail (fetchmail) servers off;
- payment providers (`payment_acquirer` before Odoo 16) disabled unless in test mode;
- shipping connectors off production (`delivery_carrier.prod_environment`);
- `database.is_neutralized` set, which shows the "neutralized" ribbon in Odoo, and the
  database's identity (`database.uuid`) renewed and its enterprise code dropped, so the copy
  never reports to Odoo's services as the original.

The instance's network policy adds the outside view: a neutralized copy has no mail egress
(k8s/network.py).
"""

NEUTRALIZED_FLAG = "database.is_neutralized"

NEUTRALIZE_SQL = """
DO $neutralize$
BEGIN
    IF to_regclass('public.ir_cron') IS NOT NULL THEN
        IF to_regclass('public.ir_model_data') IS NOT NULL THEN
            UPDATE public.ir_cron SET active = false
             WHERE id NOT IN (SELECT res_id FROM public.ir_model_data
                               WHERE model = 'ir.cron' AND module = 'base'
                                 AND name = 'autovacuum_job');
        ELSE
            UPDATE public.ir_cron SET active = false;
        END IF;
    END IF;
    IF to_regclass('public.ir_mail_server') IS NOT NULL THEN
        UPDATE public.ir_mail_server SET active = false;
    END IF;
    IF to_regclass('public.fetchmail_server') IS NOT NULL THEN
        UPDATE public.fetchmail_server SET active = false;
    END IF;
    IF to_regclass('public.payment_provider') IS NOT NULL THEN
        UPDATE public.payment_provider SET state = 'disabled'
         WHERE state NOT IN ('test', 'disabled');
    END IF;
    IF to_regclass('public.payment_acquirer') IS NOT NULL THEN
        UPDATE public.payment_acquirer SET state = 'disabled'
         WHERE state NOT IN ('test', 'disabled');
    END IF;
    IF to_regclass('public.delivery_carrier') IS NOT NULL THEN
        UPDATE public.delivery_carrier SET prod_environment = false;
    END IF;
    IF to_regclass('public.ir_config_parameter') IS NOT NULL THEN
        UPDATE public.ir_config_parameter SET value = 'True' WHERE key = 'database.is_neutralized';
        IF NOT FOUND THEN
            INSERT INTO public.ir_config_parameter (key, value)
            VALUES ('database.is_neutralized', 'True');
        END IF;
        UPDATE public.ir_config_parameter SET value = pg_catalog.gen_random_uuid()::text
         WHERE key = 'database.uuid';
        DELETE FROM public.ir_config_parameter WHERE key = 'database.enterprise_code';
    END IF;
END
$neutralize$;
"""
"""Run inside the restore's transaction, after the data and before COMMIT. Names are qualified:
the restore's script empties the session's search_path."""
