import { mount } from '../mount.js';
import { CheckApp } from './check-app.js';

mount(CheckApp);
