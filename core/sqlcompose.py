"""Several writes in one statement, compiled by Django's own compilers (PostgreSQL).

The hot path (issue 18) sends its writes as one statement with data-modifying CTEs
(`WITH a AS (UPDATE ...), b AS (INSERT ...) ...`) instead of one round trip each. The SQL of
each part is what the ORM itself would send for `bulk_create` or `QuerySet.update`, with the
same value preparation (pre_save, get_db_prep_save), so the rows written are the same; only
the number of statements changes. `mark_saved` then does what bulk_create does to the objects.
"""

from collections.abc import Sequence

from django.db import connections, models
from django.db.models import sql


def insert_sql(objs: Sequence[models.Model], returning: Sequence[str] = ("pk",)) -> tuple[str, tuple]:
    """The INSERT bulk_create would send for `objs` (all of one model, without a pk yet),
    RETURNING the named fields."""
    model = type(objs[0])
    opts = model._meta
    model._default_manager.all()._prepare_for_bulk_create(objs)
    fields = [f for f in opts.concrete_fields if not f.generated and not isinstance(f, models.AutoField)]
    query = sql.InsertQuery(model)
    query.insert_values(fields, objs, raw=False)
    compiler = query.get_compiler(using=objs[0]._state.db or "default")
    compiler.returning_fields = [opts.pk if name == "pk" else opts.get_field(name) for name in returning]
    ((statement, params),) = compiler.as_sql()
    return statement, tuple(params)


def update_sql(queryset: models.QuerySet, **values) -> tuple[str, tuple]:
    """The UPDATE `queryset.update(**values)` would send (a one-table filter only)."""
    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_values(values)
    query.annotations = {}
    statement, params = query.get_compiler(queryset.db).as_sql()
    return statement, tuple(params)


def mark_saved(objs: Sequence[models.Model], pks: Sequence[int], db: str = "default") -> None:
    for obj, pk in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = db


def from_row(model: type[models.Model], attnames: Sequence[str], values: Sequence, db: str = "default"):
    """A model instance from a raw row's values (the columns of `attnames`, in order), through
    the same converters a queryset applies (JSON decoded, and so on)."""
    connection = connections[db]
    converted = []
    for name, value in zip(attnames, values, strict=True):
        field = model._meta.get_field(name)
        col = field.get_col(model._meta.db_table)
        for convert in [*connection.ops.get_db_converters(col), *field.get_db_converters(connection)]:
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(db, list(attnames), converted)


def insert_select_sql(
    obj: models.Model, *, source: str, columns: dict[str, str], returning: Sequence[str] = ("pk",)
) -> tuple[str, tuple]:
    """insert_sql for one object, as `INSERT ... SELECT ... FROM source`: the columns named in
    `columns` (attname -> an SQL expression over `source`, such as "e.id") take their value
    from the row of `source` instead of the object, the rest the values the ORM would send. No
    row in `source`, no row inserted."""
    statement, params = insert_sql([obj], returning=returning)
    opts = type(obj)._meta
    fields = [f for f in opts.concrete_fields if not f.generated and not isinstance(f, models.AutoField)]
    head, sep, rest = statement.partition(" VALUES (")
    values, sep2, tail = rest.partition(") RETURNING ")
    placeholders = values.split(", ")
    if not sep or not sep2 or len(placeholders) != len(fields) or len(params) != len(fields):
        raise ValueError(f"Unexpected INSERT for {opts.label}: {statement}")
    exprs, kept = [], []
    for field, placeholder, param in zip(fields, placeholders, params, strict=True):
        if field.attname in columns:
            exprs.append(columns[field.attname])
        else:
            exprs.append(placeholder)
            kept.append(param)
    return f"{head} SELECT {', '.join(exprs)} FROM {source} RETURNING {tail}", tuple(kept)  # noqa: S608
