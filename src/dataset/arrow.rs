//! Arrow-based formats: the IPC *stream* files of Hugging Face `save_to_disk` and Parquet. Each
//! record batch is converted row by row into JSON objects holding only the wanted columns.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Map, Value};

pub fn read_ipc_stream(
    path: &Path,
    fields: &[&str],
    out: &mut Vec<Map<String, Value>>,
) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
        .with_context(|| format!("{} is not an Arrow IPC stream file", path.display()))?;
    for batch in reader {
        let batch = batch.with_context(|| format!("{} is corrupt", path.display()))?;
        push_batch(&batch, fields, out);
    }
    Ok(())
}

pub fn read_parquet(path: &Path, fields: &[&str], out: &mut Vec<Map<String, Value>>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    for batch in reader {
        let batch = batch.with_context(|| format!("{} is corrupt", path.display()))?;
        push_batch(&batch, fields, out);
    }
    Ok(())
}

fn push_batch(batch: &RecordBatch, fields: &[&str], out: &mut Vec<Map<String, Value>>) {
    let schema = batch.schema();
    let columns: Vec<(&str, &dyn Array)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| fields.contains(&f.name().as_str()))
        .map(|(f, c)| (f.name().as_str(), c.as_ref()))
        .collect();
    for row in 0..batch.num_rows() {
        let mut map = Map::new();
        for (name, column) in &columns {
            map.insert((*name).to_string(), value_at(*column, row, fields));
        }
        out.push(map);
    }
}

/// One cell as JSON. Types dgen never needs (binary, temporal, maps) become null.
fn value_at(array: &dyn Array, row: usize, fields: &[&str]) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    macro_rules! num {
        ($t:ty) => {
            Value::from(array.as_primitive::<$t>().value(row))
        };
    }
    match array.data_type() {
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => num!(Float32Type),
        DataType::Float64 => num!(Float64Type),
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref(), fields),
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref(), fields),
        DataType::FixedSizeList(_, _) => {
            list(array.as_fixed_size_list().value(row).as_ref(), fields)
        }
        DataType::Struct(struct_fields) => {
            let s = array.as_struct();
            let mut map = Map::new();
            for (i, field) in struct_fields.iter().enumerate() {
                if fields.contains(&field.name().as_str()) {
                    map.insert(
                        field.name().clone(),
                        value_at(s.column(i).as_ref(), row, fields),
                    );
                }
            }
            Value::Object(map)
        }
        _ => Value::Null,
    }
}

fn list(values: &dyn Array, fields: &[&str]) -> Value {
    Value::Array(
        (0..values.len())
            .map(|i| value_at(values, i, fields))
            .collect(),
    )
}
