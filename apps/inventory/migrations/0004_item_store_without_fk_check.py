"""InventoryItem.store loses its per-row FK check (see the model); a statement-level trigger
deletes a store's items with the store instead, so no item outlives its store."""

import django.db.models.deletion
from django.db import migrations, models

CREATE_TRIGGER = """
CREATE FUNCTION inventory_store_delete_items() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Runs after the store rows are gone, with a fresh snapshot: it also removes items that a
    -- run committed while the store's deletion waited for that run's row.
    DELETE FROM inventory_inventoryitem i USING gone WHERE i.store_id = gone.id;
    RETURN NULL;
END $$;
CREATE TRIGGER inventory_store_delete_items AFTER DELETE ON inventory_store
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION inventory_store_delete_items();
"""
DROP_TRIGGER = """
DROP TRIGGER inventory_store_delete_items ON inventory_store;
DROP FUNCTION inventory_store_delete_items();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0003_signal_index_store_created"),
    ]

    operations = [
        migrations.AlterField(
            model_name="inventoryitem",
            name="store",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="items",
                to="inventory.store",
            ),
        ),
        migrations.RunSQL(CREATE_TRIGGER, DROP_TRIGGER),
    ]
