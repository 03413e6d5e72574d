import { mount } from '../mount.js';
import { ConsentWindowApp } from './consent-window-app.js';

mount(ConsentWindowApp);
